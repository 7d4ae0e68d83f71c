# frozen_string_literal: true

# Plumbing for the stomp gem smoke tests: one Stomp::Connection per STOMP version, with a
# reader thread that sorts what the broker sends into MESSAGE, RECEIPT and ERROR frames.
#
# The test thread waits on those with a deadline and says what it was waiting for when the
# deadline passes.

require 'securerandom'
require 'stomp'

module StompboxSmoke
  HOST = ENV.fetch('STOMP_HOST', '127.0.0.1')
  # The user clients/run-smoke.sh made (its broker refuses anonymous CONNECTs); '' connects
  # anonymously, to a broker that allows it.
  LOGIN = ENV.fetch('STOMP_LOGIN', '')
  PASSCODE = ENV.fetch('STOMP_PASSCODE', '')
  # Seconds to wait for any one thing the broker owes us (a receipt, a message).
  TIMEOUT = Float(ENV.fetch('STOMP_SMOKE_TIMEOUT', '10'))

  def self.port
    value = ENV['STOMP_PORT']
    if value.nil? || value.empty?
      raise 'set STOMP_PORT to the port of a running stompbox (see clients/run-smoke.sh)'
    end

    Integer(value)
  end

  # A destination nobody else uses, e.g. /queue/smoke-rb-queue-1f2e...
  def self.fresh(kind, name)
    "/#{kind}/smoke-rb-#{name}-#{SecureRandom.hex(6)}"
  end

  # client-individual is a 1.1 addition; 1.0 only knows auto and client, and acking every
  # message in client mode acknowledges exactly that message and the ones before it.
  def self.ack_mode(version)
    version == '1.0' ? 'client' : 'client-individual'
  end

  def self.describe(frame)
    "#{frame.command} #{frame.headers.inspect} body=#{frame.body.inspect}"
  end

  # One connection of a given STOMP version plus everything the broker sent on it.
  class Client
    attr_reader :version, :conn, :connected

    # `extra` CONNECT headers, e.g. 'client-id' for a durable subscriber; `port` another
    # broker's, `login` and `passcode` its user.
    def initialize(version, extra = {}, port: StompboxSmoke.port, login: LOGIN, passcode: PASSCODE)
      @version = version
      # The gem speaks 1.0 unless CONNECT carries accept-version (and then it wants host).
      headers = version == '1.0' ? {} : { 'accept-version' => version, 'host' => 'localhost' }
      headers = headers.merge(extra)
      @conn = Stomp::Connection.new(
        hosts: [{ login: login, passcode: passcode, host: HOST, port: port }],
        reliable: false,
        connect_timeout: TIMEOUT.to_i,
        connect_headers: headers
      )
      @connected = @conn.connection_frame
      check_connected
      @messages = []
      @receipts = {}
      @errors = []
      @lock = Mutex.new
      @cond = ConditionVariable.new
      @seq = 0
      @reader = Thread.new { read_loop }
      @reader.report_on_exception = false
    end

    def receipt(label)
      @seq += 1
      "#{label}-#{@seq}-#{SecureRandom.hex(4)}"
    end

    # SEND with a receipt; returns the receipt id to wait for.
    def send_message(destination, body, headers = {})
      rid = receipt('send')
      @conn.publish(destination, body, headers.merge(receipt: rid))
      rid
    end

    # SUBSCRIBE and wait for its receipt, so the subscription exists before anyone sends.
    def subscribe(destination, sub_id, ack, extra = {})
      rid = receipt('sub')
      @conn.subscribe(destination, { id: sub_id, ack: ack, receipt: rid }.merge(extra))
      wait_receipts([rid])
    end

    # UNSUBSCRIBE and wait for its receipt: frames are handled in order, so every ACK sent
    # before it has been read by the broker.
    def unsubscribe(destination, sub_id, extra = {})
      rid = receipt('unsub')
      @conn.unsubscribe(destination, { id: sub_id, receipt: rid }.merge(extra))
      wait_receipts([rid])
    end

    # ACK in the form each version wants: 1.0 message-id, 1.1 + subscription, 1.2 id.
    def ack(frame)
      h = frame.headers
      case @version
      when '1.0' then @conn.ack(h['message-id'])
      when '1.1' then @conn.ack(h['message-id'], subscription: h['subscription'])
      else @conn.ack(h['ack'])
      end
    end

    def wait_receipts(ids, timeout = TIMEOUT)
      wanted = ids.to_a
      deadline = now + timeout
      @lock.synchronize do
        loop do
          raise_errors
          missing = wanted.reject { |id| @receipts.key?(id) }
          break if missing.empty?

          left = deadline - now
          if left <= 0
            raise Minitest::Assertion,
                  "#{missing.size} receipt(s) never arrived, first: #{missing.first(5)}"
          end
          @cond.wait(@lock, left)
        end
      end
    end

    # The next MESSAGE frame, or fail saying `what` we were waiting for.
    def next_message(what, timeout = TIMEOUT)
      frame = pop_message(timeout)
      return frame if frame

      errors = @lock.synchronize { @errors.map { |e| StompboxSmoke.describe(e) } }
      raise Minitest::Assertion,
            "no MESSAGE within #{timeout}s while waiting for #{what}; errors: #{errors}"
    end

    # No MESSAGE arrives for `quiet_for` seconds (catches duplicates and redeliveries).
    def assert_quiet(quiet_for = 0.3)
      extra = pop_message(quiet_for)
      return unless extra

      raise Minitest::Assertion, "unexpected extra MESSAGE: #{StompboxSmoke.describe(extra)}"
    end

    # Stops the reader first: the gem warns on stderr when a receive sees the socket close.
    def close
      @reader.kill
      @reader.join(2)
      @conn.disconnect unless @conn.closed?
    rescue StandardError
      nil
    end

    private

    def check_connected
      frame = @connected
      unless frame && frame.command == 'CONNECTED'
        raise Minitest::Assertion, "no CONNECTED frame: #{frame && StompboxSmoke.describe(frame)}"
      end
      return if @version == '1.0'
      return if frame.headers['version'] == @version

      raise Minitest::Assertion, "asked for #{@version}, got #{StompboxSmoke.describe(frame)}"
    end

    def read_loop
      loop do
        frame = @conn.receive
        break if frame.nil?

        case frame.command
        when 'MESSAGE'
          @lock.synchronize do
            @messages << frame
            @cond.broadcast
          end
        when 'RECEIPT'
          @lock.synchronize do
            @receipts[frame.headers['receipt-id']] = true
            @cond.broadcast
          end
        when 'ERROR'
          @lock.synchronize do
            @errors << frame
            @cond.broadcast
          end
        end
      end
    rescue IOError, SystemCallError, Stomp::Error::NoCurrentConnection
      nil
    end

    # Queue#pop(timeout:) is Ruby 3.2+; Debian 12 ships 3.1.
    def pop_message(timeout)
      deadline = now + timeout
      @lock.synchronize do
        while @messages.empty?
          left = deadline - now
          return nil if left <= 0

          @cond.wait(@lock, left)
        end
        @messages.shift
      end
    end

    def raise_errors
      return if @errors.empty?

      raise Minitest::Assertion, "ERROR frame(s): #{@errors.map { |e| StompboxSmoke.describe(e) }}"
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end
end
