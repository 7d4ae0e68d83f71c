#!/usr/bin/env ruby
# frozen_string_literal: true

# Send persistent messages through the stomp gem's failover support, each with a RECEIPT, and
# resend those whose RECEIPT was lost when the gem moved to another broker.
#
#   ruby failover_producer.rb FAILOVER_URL [DESTINATION] [COUNT]
#   STOMP_LOGIN=app STOMP_PASSCODE=... ruby clients/ruby/failover_producer.rb \
#     'failover:(stomp://127.0.0.1:61616,stomp://127.0.0.1:61617)?initialReconnectDelay=100&randomize=false&maxReconnectAttempts=50' \
#     /queue/orders 1000
#
# What the gem (stomp 1.4.10) does by itself (lib/client/utils.rb, lib/connection/utils.rb,
# lib/connection/netio.rb, lib/stomp/connection.rb):
# - it reconnects from whichever thread first sees the socket fail: the listener thread on
#   EOF, or a publishing thread whose write raises. It tries the next host, then the next,
#   sleeping initialReconnectDelay, doubled (backOffMultiplier) up to maxReconnectDelay, and
#   gives up after maxReconnectAttempts (0: never) by raising
#   Stomp::Error::MaxReconnectAttempts in the thread that created the client;
# - it re-sends its SUBSCRIBE frames, and the one frame whose write raised;
# - it does not re-send frames already written to the old socket: a SEND whose RECEIPT never
#   came is the application's to resend, and this class does that;
# - while a reconnect is under way, `publish` raises Stomp::Error::NoCurrentConnection, and so
#   does the listener thread's next `receive`, which ends that thread: no MESSAGE or RECEIPT
#   is read again. A failover URL cannot turn that check off; the hash form can
#   (`closed_check: false`, see README.md). This class notices the dead listener and starts a
#   new client (`Stats#restarts`).
#
# A URL gives STOMP 1.0 (no connect headers, so no heart-beats); the hash form gives 1.2.
# STOMP_LOGIN / STOMP_PASSCODE, when set, go into each address of the URL
# (`FailoverProducer.url_with_credentials`), so the passcode is not on the command line.

require 'stomp'

class FailoverProducer
  # A SEND the broker has not acknowledged yet. `generation` is the connection it was written
  # on (nil: not written yet).
  Entry = Struct.new(:destination, :body, :headers, :generation, :writes)

  # For a report: messages given to `publish`, SEND frames written, of which written again
  # (marked resent), messages whose RECEIPT arrived, the gem's reconnects and failed connect
  # attempts, and clients started again because the gem's listener thread had died.
  Stats = Struct.new(:sent, :frames, :resent, :receipted, :reconnects, :connect_failures,
                     :restarts, keyword_init: true)

  # The gem's callback logger. on_connected runs inside the gem's reconnect, before the new
  # socket is handed to any thread, so a SEND written after `generation` moved went to the new
  # connection. Defining on_connectfail and on_miscerr also stops the gem printing each failed
  # attempt to stderr.
  class Events
    def initialize(producer, verbose)
      @producer = producer
      @verbose = verbose
    end

    def on_connected(params)
      @producer&.reconnected
      warn "failover: connected to #{params[:cur_host]}:#{params[:cur_port]}" if @verbose
    end

    def on_connectfail(params)
      @producer&.connect_failed
      warn "failover: connect to #{params[:cur_host]}:#{params[:cur_port]} failed" if @verbose
    end

    def on_miscerr(params, error)
      warn "failover: #{params[:cur_host]}:#{params[:cur_port]}: #{error.strip}" if @verbose
    end
  end

  # `url` with `login:passcode@` in each stomp:// address that names none: the gem takes a
  # failover URL's credentials from there only (failover:(stomp://login:passcode@host:port,…)),
  # and this way they come from the environment or a secret store, not a command line (which
  # `ps` shows) or source. The gem's URL pattern takes letters, digits, `_` and some
  # punctuation there; a passcode with `/`, `,`, `(`, `)`, `@` or spaces needs the hash form
  # (hosts: [{ login:, passcode:, … }]). An empty login leaves the URL as it is: anonymous.
  def self.url_with_credentials(url, login, passcode)
    return url if login.to_s.empty?

    url.gsub(%r{stomp(?:\+ssl)?://(?![^,)@]*@)}) { |scheme| "#{scheme}#{login}:#{passcode}@" }
  end

  # `params`: a failover URL or a Stomp::Client hash. At most `window` SENDs wait for their
  # RECEIPT at a time. `timeout`: seconds without any RECEIPT before giving up.
  def initialize(params, window: 20, timeout: 30, verbose: false)
    @params = params
    @window = window
    @timeout = timeout
    @verbose = verbose
    @lock = Mutex.new
    @cond = ConditionVariable.new
    @generation = 0
    @pending = {}
    @writes = Hash.new(0)
    @stats = Stats.new(sent: 0, frames: 0, resent: 0, receipted: 0, reconnects: 0,
                       connect_failures: 0, restarts: 0)
    @client = open_client
  end

  # Sends `body` persistently, waiting first while `window` SENDs wait for their RECEIPT.
  # `key` names the message (a `seq` header); its RECEIPT may come after `publish` returns.
  def publish(destination, key, body, headers = {})
    @lock.synchronize do
      await { @pending.size < @window }
      @pending[key] = Entry.new(destination, body, headers.merge('seq' => key.to_s), nil, 0)
      @stats.sent += 1
    end
    write(key)
  end

  # Returns once every SEND has its RECEIPT, resending after reconnects as needed.
  def flush
    @lock.synchronize { await { @pending.empty? } }
  end

  def stats
    @lock.synchronize { @stats.dup }
  end

  # How many SEND frames were written for `key`: the most copies a consumer may see.
  def writes(key)
    @lock.synchronize { @writes[key] }
  end

  def close
    close_client(@client)
  end

  # Called by Events, in whichever thread reconnected.
  def reconnected
    @lock.synchronize do
      @generation += 1
      @stats.reconnects += 1
      @cond.broadcast
    end
  end

  def connect_failed
    @lock.synchronize { @stats.connect_failures += 1 }
  end

  private

  def open_client
    client = Stomp::Client.new(@params)
    client.set_logger(Events.new(self, @verbose))
    client
  end

  # Disconnects if it can; a client whose connection is gone has nothing left to say.
  def close_client(client)
    client.set_logger(Events.new(nil, false))
    client.close
  rescue StandardError
    nil
  end

  # Writes the SEND for `key` on the current connection; false if the gem is reconnecting.
  # A SEND written before is marked `stompbox-resent:true`, so a consumer can tell a possible
  # duplicate from a bug. Only the thread that publishes writes.
  def write(key)
    entry, generation = @lock.synchronize { [@pending[key], @generation] }
    return true unless entry # receipted meanwhile

    headers = entry.headers.merge(persistent: 'true')
    headers['stompbox-resent'] = 'true' if entry.writes.positive?
    @client.publish(entry.destination, entry.body, headers) { |_receipt| receipted(key) }
    @lock.synchronize do
      entry.generation = generation
      entry.writes += 1
      @writes[key] += 1
      @stats.frames += 1
      @stats.resent += 1 if headers.key?('stompbox-resent')
    end
    true
  rescue Stomp::Error::NoCurrentConnection
    false # the gem is reconnecting in another thread; `await` writes it again after that
  end

  def receipted(key)
    @lock.synchronize do
      next unless @pending.delete(key)

      @stats.receipted += 1
      @progress = now
      @cond.broadcast
    end
  end

  # Waits (holding @lock) until the block is true. Meanwhile writes again every SEND written
  # on an earlier connection (or not at all), and replaces a client whose listener thread
  # died. Raises Timeout::Error after `timeout` seconds without a RECEIPT.
  def await
    @progress = now
    until yield
      unless @client.running
        unlocked { restart }
        next
      end
      stale = @pending.select { |_, e| e.generation.nil? || e.generation < @generation }.keys
      next if !stale.empty? && unlocked { stale.all? { |key| write(key) } }

      if now - @progress > @timeout
        raise Timeout::Error, "no RECEIPT for #{@timeout}s; #{@pending.size} SEND(s) waiting"
      end

      @cond.wait(@lock, 0.2)
    end
  end

  # A new client, on which every SEND still waiting for its RECEIPT is written again: the old
  # client's RECEIPTs can no longer be read.
  def restart
    warn 'failover: the gem\'s listener thread died; starting a new client' if @verbose
    close_client(@client)
    @client = open_client
    @lock.synchronize do
      @generation += 1
      @stats.restarts += 1
    end
  end

  def unlocked
    @lock.unlock
    begin
      yield
    ensure
      @lock.lock
    end
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end

if $PROGRAM_NAME == __FILE__
  url = ARGV[0] or abort "usage: #{$PROGRAM_NAME} FAILOVER_URL [DESTINATION] [COUNT]"
  url = FailoverProducer.url_with_credentials(url, ENV.fetch('STOMP_LOGIN', ''),
                                              ENV.fetch('STOMP_PASSCODE', ''))
  destination = ARGV[1] || '/queue/example'
  count = Integer(ARGV[2] || '100')
  producer = FailoverProducer.new(url, verbose: true)
  count.times { |i| producer.publish(destination, i, "message #{i}") }
  producer.flush
  s = producer.stats
  puts "sent #{s.sent} to #{destination}: #{s.receipted} receipted, #{s.frames} SEND frames, " \
       "#{s.resent} resent; #{s.reconnects} reconnect(s), #{s.restarts} new client(s)"
  producer.close
end
