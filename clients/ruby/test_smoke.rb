# frozen_string_literal: true

# Smoke test: the stomp gem against a running stompbox on STOMP_HOST (default 127.0.0.1) and
# STOMP_PORT. `clients/run-smoke.sh ruby` starts a broker and runs this file.
#
# Each scenario runs once per STOMP version. 1.0 has no client-individual ack mode, so its
# consumers use `client` and still ACK every message.

require 'minitest/autorun'
require 'timeout'
require_relative 'smoke_client'
require_relative 'pool'

class SmokeTest < Minitest::Test
  COUNT = 100
  VERSIONS = %w[1.0 1.1 1.2].freeze

  def setup
    @opened = []
  end

  def teardown
    @opened.each(&:close)
  end

  def client(version, extra = {})
    c = StompboxSmoke::Client.new(version, extra)
    @opened << c
    c
  end

  # Receive `bodies` in order, checking headers and ACKing each one individually.
  def consume_in_order(consumer, bodies, destination, sub_id)
    seen_ids = {}
    bodies.each do |expected|
      frame = consumer.next_message("#{expected.inspect} on #{destination}")
      h = frame.headers
      assert_equal expected, frame.body, "out of order or wrong body: #{h}"
      assert_equal destination, h['destination']
      refute seen_ids.key?(h['message-id']), "message-id reused: #{h['message-id']}"
      seen_ids[h['message-id']] = true
      assert_equal sub_id, h['subscription'], h.inspect unless consumer.version == '1.0'
      if consumer.version == '1.2'
        assert h.key?('ack'), "1.2 MESSAGE without ack header in client-individual mode: #{h}"
      end
      consumer.ack(frame)
    end
  end

  # pool.rb: many threads share two long-lived connections; every receipted SEND arrives once.
  def test_a_pool_of_two_connections_carries_the_sends_of_eight_threads
    destination = StompboxSmoke.fresh('queue', 'pool')
    consumer = client('1.2')
    consumer.subscribe(destination, 'sub-pool', 'client-individual')
    pool = StompboxPool.new(size: 2, timeout: StompboxSmoke::TIMEOUT,
                            hosts: [{ login: StompboxSmoke::LOGIN,
                                      passcode: StompboxSmoke::PASSCODE,
                                      host: StompboxSmoke::HOST, port: StompboxSmoke.port }])
    threads = (0...8).map do |t|
      Thread.new { (0...25).each { |i| pool.publish_receipted(destination, "t#{t} m#{i}") } }
    end
    threads.each(&:join)
    assert_operator pool.opened, :<=, 2, 'the pool opened more connections than its size'
    got = (0...200).map do |n|
      frame = consumer.next_message("message #{n} of 200 from the pool")
      consumer.ack(frame)
      frame.body
    end
    want = (0...8).flat_map { |t| (0...25).map { |i| "t#{t} m#{i}" } }
    assert_equal want.sort, got.sort
    consumer.assert_quiet
  ensure
    pool&.close
  end

  # clients/run-smoke.sh's broker refuses anonymous CONNECTs, so every other test here shows
  # the gem logs in. A wrong passcode: the answer to CONNECT is an ERROR `authentication
  # failed` (the gem hands it over as connection_frame and raises nothing), then the broker
  # closes the connection; no hang.
  def test_a_wrong_passcode_is_refused_with_authentication_failed
    refute_empty StompboxSmoke::LOGIN, 'set STOMP_LOGIN / STOMP_PASSCODE (run-smoke.sh does)'
    wrong = "#{StompboxSmoke::PASSCODE}-wrong"
    conn = Timeout.timeout(StompboxSmoke::TIMEOUT) do
      Stomp::Connection.new(
        hosts: [{ login: StompboxSmoke::LOGIN, passcode: wrong, host: StompboxSmoke::HOST,
                  port: StompboxSmoke.port }],
        reliable: false,
        connect_timeout: StompboxSmoke::TIMEOUT.to_i,
        connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost' }
      )
    end
    frame = conn.connection_frame
    assert_equal 'ERROR', frame.command, StompboxSmoke.describe(frame)
    assert_equal 'authentication failed', frame.headers['message']
    refute_includes frame.body.to_s, wrong, 'the ERROR repeats the passcode'
    # Closed by the broker: the next read sees the end of the stream (the gem says so on
    # stderr, captured here).
    closed = nil
    capture_io do
      closed = Timeout.timeout(StompboxSmoke::TIMEOUT) do
        conn.receive.nil?
      rescue IOError, SystemCallError, Stomp::Error::NoCurrentConnection
        true
      end
    end
    assert closed, 'the broker kept the refused connection open'

    # And the right passcode still gets in (one refusal is far from the per-address back-off).
    client('1.2') # fails unless CONNECTED
  ensure
    conn&.disconnect rescue nil # rubocop:disable Style/RescueModifier
  end

  VERSIONS.each do |version|
    tag = version.delete('.')

    define_method("test_queue_delivers_each_message_once_in_order_v#{tag}") do
      destination = StompboxSmoke.fresh('queue', "queue-#{version}")
      bodies = (0...COUNT).map { |i| format('queue message %03d', i) }
      mode = StompboxSmoke.ack_mode(version)

      producer = client(version)
      receipts = bodies.each_with_index.map do |body, i|
        producer.send_message(destination, body, seq: i.to_s)
      end
      producer.wait_receipts(receipts)

      consumer = client(version)
      consumer.subscribe(destination, 'sub-queue', mode)
      consume_in_order(consumer, bodies, destination, 'sub-queue')
      consumer.assert_quiet
      consumer.unsubscribe(destination, 'sub-queue') # receipt: all 100 ACKs were read
      consumer.close

      # The ACKed messages are gone: a new consumer's first message is a fresh sentinel.
      again = client(version)
      again.subscribe(destination, 'sub-again', mode)
      producer.wait_receipts([producer.send_message(destination, 'sentinel')])
      frame = again.next_message('the sentinel')
      assert_equal 'sentinel', frame.body,
                   "ACKed message redelivered: #{StompboxSmoke.describe(frame)}"
      again.ack(frame)
      again.assert_quiet
    end

    define_method("test_topic_fans_out_to_both_subscribers_v#{tag}") do
      destination = StompboxSmoke.fresh('topic', "topic-#{version}")
      bodies = (0...COUNT).map { |i| format('topic message %03d', i) }

      subscribers = [client(version), client(version)]
      subscribers.each_with_index do |sub, n|
        sub.subscribe(destination, "sub-topic-#{n}", StompboxSmoke.ack_mode(version))
      end

      producer = client(version)
      producer.wait_receipts(bodies.map { |body| producer.send_message(destination, body) })
      producer.wait_receipts([producer.send_message(destination, 'sentinel')])

      subscribers.each_with_index do |sub, n|
        consume_in_order(sub, bodies + ['sentinel'], destination, "sub-topic-#{n}")
        sub.assert_quiet
      end
    end

    define_method("test_aborted_transaction_is_dropped_committed_one_delivered_v#{tag}") do
      destination = StompboxSmoke.fresh('queue', "tx-#{version}")
      consumer = client(version)
      consumer.subscribe(destination, 'sub-tx', StompboxSmoke.ack_mode(version))

      producer = client(version)
      conn = producer.conn
      conn.begin('tx-aborted')
      conn.publish(destination, 'aborted 1', transaction: 'tx-aborted')
      conn.publish(destination, 'aborted 2', transaction: 'tx-aborted')
      abort_rid = producer.receipt('abort')
      conn.abort('tx-aborted', receipt: abort_rid)
      producer.wait_receipts([abort_rid])

      conn.begin('tx-committed')
      conn.publish(destination, 'committed', transaction: 'tx-committed')
      commit_rid = producer.receipt('commit')
      conn.commit('tx-committed', receipt: commit_rid)
      producer.wait_receipts([commit_rid])

      # Sent after the COMMIT's receipt, so it must arrive after the committed message; if
      # an aborted message leaked, it shows up in place of "committed".
      producer.wait_receipts([producer.send_message(destination, 'sentinel')])

      consume_in_order(consumer, %w[committed sentinel], destination, 'sub-tx')
      consumer.assert_quiet
    end

    next if version == '1.0' # client-individual acks below; 1.0 has durable ones too, acked per client

    # ActiveMQ's durable topic subscription (durable_subscriber.rb): CONNECT client-id and
    # SUBSCRIBE activemq.subscriptionName. What is published while the subscriber is away is
    # kept for it; UNSUBSCRIBE with the same name deletes it.
    define_method("test_durable_subscriber_gets_what_was_published_while_away_v#{tag}") do
      topic = StompboxSmoke.fresh('topic', "durable-#{version}")
      client_id = "smoke-rb-durable-#{SecureRandom.hex(6)}"
      durable = { 'activemq.subscriptionName' => 'daily' }
      away = client(version, 'client-id' => client_id)
      away.subscribe(topic, 'sub-durable', 'client-individual', durable)
      away.close
      @opened.delete(away)

      producer = client(version)
      bodies = (0...5).map { |i| "while away #{i}" }
      producer.wait_receipts(bodies.map { |b| producer.send_message(topic, b) })

      back = client(version, 'client-id' => client_id)
      back.subscribe(topic, 'sub-durable', 'client-individual', durable)
      consume_in_order(back, bodies, topic, 'sub-durable')
      back.assert_quiet
      back.unsubscribe(topic, 'sub-durable', durable)
    end
  end
end
