#!/usr/bin/env ruby
# frozen_string_literal: true

# A durable topic subscriber (ActiveMQ style): what is published to the topic while it is away
# is kept for it and delivered when it comes back with the same client-id and subscription name.
#
#   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 ruby durable_subscriber.rb [TOPIC] [CLIENT_ID] [NAME]
#   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
#   ruby durable_subscriber.rb /topic/prices reader-1 daily --delete   # delete it for good
#
# Prints what arrives until 5 s pass without a message, then disconnects: the subscription stays.

require 'stomp'

host = ENV.fetch('STOMP_HOST', '127.0.0.1')
port = Integer(ENV.fetch('STOMP_PORT', '61613'))
# From the environment (or a secret store), never from source. '' = anonymous: the gem then
# sends no login header.
login = ENV.fetch('STOMP_LOGIN', '')
passcode = ENV.fetch('STOMP_PASSCODE', '')
topic = ARGV[0] || '/topic/example'
client_id = ARGV[1] || 'durable-example'
name = ARGV[2] || 'example'
delete = ARGV.include?('--delete')

# The client-id names the subscriber across connections; one connection at a time may use it.
client = Stomp::Client.new(
  hosts: [{ login: login, passcode: passcode, host: host, port: port }],
  reliable: false,
  connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost', 'client-id' => client_id }
)
# A refused CONNECT (wrong passcode: `authentication failed`) is an ERROR frame in place of
# CONNECTED; the gem raises nothing, so look.
if client.connection_frame.command == 'ERROR'
  abort "connect refused: #{client.connection_frame.headers['message']}"
end
durable = { 'activemq.subscriptionName' => name }

if delete
  # UNSUBSCRIBE with the name (and no live subscription on it) deletes the durable subscription
  # and what it kept.
  client.unsubscribe(topic, durable.merge(id: 'durable'))
  client.close
  puts "deleted durable subscription #{client_id}:#{name} of #{topic}"
  exit
end

inbox = Queue.new
client.subscribe(topic, durable.merge(id: 'durable', ack: 'client-individual')) do |message|
  inbox << message
end

loop do
  message = nil
  50.times do
    message = inbox.pop(true) rescue nil # rubocop:disable Style/RescueModifier
    break if message

    sleep 0.1
  end
  break unless message

  puts "received #{message.body.inspect} message-id=#{message.headers['message-id']}"
  client.ack(message)
end
puts 'no message for 5 s: disconnecting; the subscription keeps what is published meanwhile'
client.close
