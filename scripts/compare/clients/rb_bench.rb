#!/usr/bin/env ruby
# frozen_string_literal: true

# The stomp gem's throughput and latency for scripts/bench.sh: one producer connection and one
# consumer connection (auto ack, read by a thread of its own) in this one process, to one queue.
#
#   ruby scripts/compare/clients/rb_bench.rb --port 61613 --count 20000 \
#       [--mode throughput|persistent|latency] [--size 256] [--broker-pid PID]
#
# The same contract as py_bench.py (read its docstring): the modes, the timed window (first
# SEND until the consumer has the last message) and the one JSON line with msg/s, this
# process's CPU seconds (Process.times: user + sys, every thread) and the broker's.

require 'etc'
require 'json'
require 'optparse'
require 'stomp'

opts = { host: '127.0.0.1', port: nil, destination: '/queue/bench.clients.rb', count: 20_000,
         size: 256, mode: 'throughput', broker_pid: nil, login: '', passcode: '', timeout: 30.0 }
OptionParser.new do |o|
  o.on('--host HOST') { |v| opts[:host] = v }
  o.on('--port PORT', Integer) { |v| opts[:port] = v }
  o.on('--destination DEST') { |v| opts[:destination] = v }
  o.on('--count N', Integer) { |v| opts[:count] = v }
  o.on('--size BYTES', Integer) { |v| opts[:size] = v }
  o.on('--mode MODE', %w[throughput persistent latency]) { |v| opts[:mode] = v }
  o.on('--broker-pid PID', Integer) { |v| opts[:broker_pid] = v }
  o.on('--login LOGIN') { |v| opts[:login] = v }
  o.on('--passcode PASSCODE') { |v| opts[:passcode] = v }
  o.on('--timeout SECONDS', Float) { |v| opts[:timeout] = v }
end.parse!
abort 'rb_bench.rb: --port is required' unless opts[:port]

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def now_ns = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)

# utime + stime of PID in seconds from /proc/PID/stat; nil without a PID.
def broker_cpu_s(pid)
  return nil unless pid

  # After the command's closing parenthesis, field 3 (state) is index 0: utime is field 14,
  # stime 15.
  fields = File.read("/proc/#{pid}/stat").rpartition(')').last.split
  (fields[11].to_i + fields[12].to_i) / Etc.sysconf(Etc::SC_CLK_TCK).to_f
rescue SystemCallError
  nil
end

def connect(opts)
  Stomp::Connection.new(
    hosts: [{ login: opts[:login], passcode: opts[:passcode], host: opts[:host],
              port: opts[:port] }],
    reliable: false,
    connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost' }
  )
end

# The next frame on CONN must be the RECEIPT for ID.
def expect_receipt(conn, id)
  f = conn.receive
  return if f && f.command == 'RECEIPT' && f.headers['receipt-id'] == id

  raise "expected RECEIPT #{id}, got #{f ? "#{f.command} #{f.headers['message']}" : 'EOF'}"
end

# The consumer's side: counts MESSAGE frames on its own thread; signals each arrival.
class Consumer
  attr_reader :received, :rtts_ns, :error

  def initialize(conn, count, latency)
    @conn = conn
    @count = count
    @latency = latency
    @received = 0
    @rtts_ns = []
    @lock = Mutex.new
    @cond = ConditionVariable.new
    @last_at = now
    @error = nil
  end

  def start
    @thread = Thread.new do
      while @received < @count
        f = @conn.receive
        raise 'the broker closed the connection' unless f
        raise "ERROR frame: #{f.headers['message']}" if f.command == 'ERROR'
        next unless f.command == 'MESSAGE'

        @rtts_ns << (now_ns - Integer(f.headers['ts'])) if @latency
        @lock.synchronize do
          @received += 1
          @last_at = now
          @cond.signal
        end
      end
    rescue StandardError => e
      @lock.synchronize do
        @error = e.message
        @cond.signal
      end
    end
  end

  # Waits until N messages have arrived in all; false when nothing arrived for TIMEOUT s.
  def wait_for(n, timeout)
    @lock.synchronize do
      while @received < n && @error.nil?
        return false if now - @last_at > timeout

        @cond.wait(@lock, 0.5)
      end
    end
    raise @error if @error

    true
  end
end

def run(opts)
  cconn = connect(opts)
  pconn = connect(opts)
  cconn.subscribe(opts[:destination], { id: '1', ack: 'auto', receipt: 'sub' })
  expect_receipt(cconn, 'sub')
  consumer = Consumer.new(cconn, opts[:count], opts[:mode] == 'latency')
  consumer.start

  body = 'x' * opts[:size]
  count = opts[:count]
  cpu0 = Process.times
  broker0 = broker_cpu_s(opts[:broker_pid])
  t0 = now
  count.times do |i|
    case opts[:mode]
    when 'throughput'
      pconn.publish(opts[:destination], body)
    when 'persistent'
      pconn.publish(opts[:destination], body, { persistent: 'true', receipt: i.to_s })
      expect_receipt(pconn, i.to_s)
    else
      pconn.publish(opts[:destination], body, { ts: now_ns.to_s })
      raise "message #{i} not received within #{opts[:timeout]} s" unless
        consumer.wait_for(i + 1, opts[:timeout])
    end
  end
  send_s = now - t0
  complete = consumer.wait_for(count, opts[:timeout])
  wall = now - t0
  cpu1 = Process.times
  broker1 = broker_cpu_s(opts[:broker_pid])
  pconn.disconnect
  cconn.disconnect
  unless complete
    raise "received #{consumer.received} of #{count}: nothing arrived for #{opts[:timeout]} s"
  end

  user = cpu1.utime - cpu0.utime
  sys = cpu1.stime - cpu0.stime
  res = { received: consumer.received, wall_s: wall.round(4), send_s: send_s.round(4),
          msg_per_s: (consumer.received / wall).round(1), client_user_s: user.round(3),
          client_sys_s: sys.round(3), client_cpu_s: (user + sys).round(3),
          broker_cpu_s: broker0 && broker1 ? (broker1 - broker0).round(3) : nil }
  unless consumer.rtts_ns.empty?
    rtts = consumer.rtts_ns.sort
    res[:latency_p50_us] = (rtts[rtts.size / 2] / 1000.0).round(1)
    res[:latency_p99_us] = (rtts[[rtts.size - 1, rtts.size * 99 / 100].min] / 1000.0).round(1)
  end
  res
end

out = { client: "stomp gem #{Stomp::Version::STRING} (Ruby #{RUBY_VERSION})", transport: 'tcp',
        mode: opts[:mode], count: opts[:count], size: opts[:size] }
begin
  out.merge!(run(opts))
rescue StandardError => e
  out[:failed] = "#{e.class}: #{e.message}"
  puts JSON.generate(out)
  exit 1
end
puts JSON.generate(out)
