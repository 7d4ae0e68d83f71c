# frozen_string_literal: true

# Failover test: the stomp gem's failover URL against a master/standby pair
# (clients/pair.sh, which reads STOMPBOX_BIN). The master is killed with SIGKILL while
# FailoverProducer streams persistent receipted SENDs; the gem moves to the standby, which has
# taken over the shared store, and the producer resends what had no RECEIPT. Every message
# must then be on the standby's queue, and only a resent message may be there twice.
#
# `clients/run-smoke.sh ruby` runs this file too.

require 'fileutils'
require 'minitest/autorun'
require 'tmpdir'
require_relative 'failover_producer'
require_relative 'smoke_client'

class FailoverTest < Minitest::Test
  PAIR = File.expand_path('../pair.sh', __dir__)
  COUNT = 2000
  # Receipted SENDs before the master is killed.
  KILL_AFTER = 500

  def setup
    @tmp = Dir.mktmpdir('stompbox-pair-rb-')
    @dir = File.join(@tmp, 'pair')
    out = IO.popen([PAIR, 'start', @dir], err: %i[child out], &:read)
    raise "clients/pair.sh start failed:\n#{out}" unless $?.success?

    # Ports and pids, and the user both brokers let in (STOMP_LOGIN, STOMP_PASSCODE).
    @pair = File.readlines(File.join(@dir, 'pair.env')).to_h do |line|
      key, value = line.strip.split('=', 2)
      [key, key.start_with?('STOMP_') ? value : Integer(value)]
    end
  end

  def teardown
    @producer&.close
    @consumer&.close
    system(PAIR, 'stop', @dir, out: File::NULL) if @dir
    FileUtils.rm_rf(@tmp) if @tmp
  end

  # The ActiveMQ-style URL: STOMP 1.0, and the gem's listener thread may die in the failover
  # (failover_producer.rb); the producer then starts a new client.
  def test_failover_url_kill_9_of_the_master_loses_no_receipted_message
    url = "failover:(stomp://#{StompboxSmoke::HOST}:#{@pair['A_PORT']}," \
          "stomp://#{StompboxSmoke::HOST}:#{@pair['B_PORT']})" \
          '?initialReconnectDelay=20&maxReconnectDelay=1000&randomize=false&maxReconnectAttempts=200'
    # failover:(stomp://login:passcode@host:port,…): the gem logs in again on each reconnect.
    url = FailoverProducer.url_with_credentials(url, @pair['STOMP_LOGIN'], @pair['STOMP_PASSCODE'])
    assert_equal 2, url.scan("://#{@pair['STOMP_LOGIN']}:").size, 'credentials in both addresses'
    kill_the_master_while_sending(url, 'STOMP 1.0, failover URL')
  end

  # The hash form with `closed_check: false`: STOMP 1.2 with heart-beats, and the listener
  # thread waits out a reconnect instead of dying.
  def test_hash_form_kill_9_of_the_master_loses_no_receipted_message
    hosts = [@pair['A_PORT'], @pair['B_PORT']].map do |port|
      { login: @pair['STOMP_LOGIN'], passcode: @pair['STOMP_PASSCODE'], host: StompboxSmoke::HOST,
        port: port }
    end
    params = { hosts: hosts, reliable: true, closed_check: false, randomize: false,
               initial_reconnect_delay: 0.02, max_reconnect_delay: 1.0,
               max_reconnect_attempts: 200,
               connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost',
                                  'heart-beat' => '5000,5000' } }
    stats = kill_the_master_while_sending(params, 'STOMP 1.2, hash, closed_check: false')
    assert_equal 0, stats.restarts, 'the listener thread died despite closed_check: false'
  end

  private

  # Streams COUNT persistent receipted SENDs through `params`, kills the master after
  # KILL_AFTER RECEIPTs, then reads the queue on the standby.
  def kill_the_master_while_sending(params, label)
    destination = StompboxSmoke.fresh('queue', 'failover')
    @producer = FailoverProducer.new(params, window: 20, timeout: StompboxSmoke::TIMEOUT)
    killed_after = nil
    COUNT.times do |i|
      @producer.publish(destination, i, "failover message #{i}")
      next if killed_after || @producer.stats.receipted < KILL_AFTER

      killed_after = @producer.stats.receipted
      Process.kill(:KILL, @pair['A_PID'])
    end
    @producer.flush
    @producer.publish(destination, 'sentinel', 'sentinel')
    @producer.flush
    stats = @producer.stats
    assert_operator killed_after, :<, COUNT, 'the master was killed only after the last SEND'
    assert_operator stats.reconnects + stats.restarts, :>=, 1, "never reconnected: #{stats.to_h}"
    assert_equal COUNT + 1, stats.receipted

    # Everything sent before the sentinel is ahead of it on the queue, so reading up to it reads
    # all; what follows would be a stray copy.
    @consumer = StompboxSmoke::Client.new('1.2', port: @pair['B_PORT'], login: @pair['STOMP_LOGIN'],
                                                 passcode: @pair['STOMP_PASSCODE'])
    @consumer.subscribe(destination, 'sub-failover', 'client-individual')
    copies = Hash.new(0)
    marked = Hash.new(0)
    loop do
      frame = @consumer.next_message("message #{copies.size} of #{COUNT} on the standby")
      @consumer.ack(frame)
      break if frame.body == 'sentinel'

      seq = Integer(frame.headers['seq'])
      copies[seq] += 1
      marked[seq] += 1 if frame.headers['stompbox-resent'] == 'true'
    end
    @consumer.assert_quiet

    missing = (0...COUNT).reject { |seq| copies.key?(seq) }
    assert_empty missing, "receipted but never received: #{missing.first(10)}"
    # At most one unmarked copy (the first write), and no more copies than SENDs written.
    extra = copies.select { |seq, n| n - marked[seq] > 1 || n > @producer.writes(seq) }
    assert_empty extra, 'copies beyond what was resent (seq => copies)'
    received = copies.values.sum
    puts "\nruby failover (#{label}): killed the master after #{killed_after} receipts; " \
         "sent #{COUNT}, SEND frames #{stats.frames}, resent #{stats.resent}, " \
         "receipted #{stats.receipted - 1}, received #{received}, " \
         "duplicates #{received - copies.size}, reconnects #{stats.reconnects}, " \
         "new clients #{stats.restarts}"
    stats
  end
end
