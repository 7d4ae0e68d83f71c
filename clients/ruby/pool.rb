# frozen_string_literal: true

# A tiny connection pool for the stomp gem: a fixed number of long-lived connections shared by
# many threads, instead of a connection per message (CONNECT costs a round trip and, behind a
# load balancer, a new backend connection; a broker counts connections against its limits).
#
#   pool = StompboxPool.new(size: 2, hosts: [{ login: 'app', passcode: ENV.fetch('STOMP_PASSCODE'),
#                                              host: '127.0.0.1', port: 61613 }])
#   pool.with { |conn| conn.publish('/queue/orders', 'hello', persistent: 'true') }
#   pool.close
#
# Each connection is used by one thread at a time (the gem's Connection is not meant to be
# shared mid-frame). `with` waits up to `timeout` seconds for a free one. Connections open
# lazily, up to `size`. `publish_receipted` sends and waits for the broker's RECEIPT (the broker
# has the message, on disk when persistent), using the connection's own reader.
#
# Pooled connections are for sending: `publish_receipted` reads frames until its RECEIPT and
# drops anything else, so do not SUBSCRIBE on them (consumers keep a connection of their own).

require 'securerandom'
require 'stomp'
require 'timeout'

class StompboxPool
  attr_reader :size

  def initialize(size:, hosts:, connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost' },
                 timeout: 10, reliable: false)
    @size = size
    @params = { hosts: hosts, reliable: reliable, connect_headers: connect_headers }
    @timeout = timeout
    @idle = Queue.new
    @all = []
    @lock = Mutex.new
  end

  # Yields a connection, then gives it back (also when the block raises). A connection that
  # failed (closed) is dropped and replaced by a new one on a later checkout.
  def with
    conn = checkout
    begin
      yield conn
    ensure
      checkin(conn)
    end
  end

  # SEND and wait for its RECEIPT on a pooled connection. Raises Timeout::Error if none
  # comes within the pool's timeout, or the broker's ERROR.
  def publish_receipted(destination, body, headers = {})
    with do |conn|
      id = "pool-#{SecureRandom.hex(8)}"
      conn.publish(destination, body, headers.merge(receipt: id))
      Timeout.timeout(@timeout) do
        loop do
          frame = conn.receive
          raise Stomp::Error::NoCurrentConnection if frame.nil?
          raise Stomp::Error::BrokerException, frame if frame.command == 'ERROR'
          break if frame.command == 'RECEIPT' && frame.headers['receipt-id'] == id
        end
      end
    end
  end

  # Connections opened so far (at most `size`).
  def opened
    @lock.synchronize { @all.size }
  end

  def close
    @lock.synchronize do
      @all.each { |c| c.disconnect unless c.closed? rescue nil } # rubocop:disable Style/RescueModifier
      @all.clear
    end
  end

  private

  def checkout
    conn = begin
      @idle.pop(true)
    rescue ThreadError
      nil
    end
    conn ||= open_one
    conn ||= wait_idle
    conn
  end

  def checkin(conn)
    if conn.closed?
      @lock.synchronize { @all.delete(conn) }
    else
      @idle << conn
    end
  end

  # A new connection if the pool has room, else nil.
  def open_one
    @lock.synchronize do
      return nil if @all.size >= @size

      conn = Stomp::Connection.new(@params)
      @all << conn
      conn
    end
  end

  # Queue#pop(timeout:) is Ruby 3.2+; Debian 12 ships 3.1.
  def wait_idle
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + @timeout
    loop do
      begin
        return @idle.pop(true)
      rescue ThreadError
        raise Timeout::Error, 'no pooled connection free' if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.005
      end
    end
  end
end
