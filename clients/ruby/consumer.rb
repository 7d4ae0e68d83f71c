#!/usr/bin/env ruby
# frozen_string_literal: true

# Receive messages from stompbox over STOMP 1.2 and ACK each one (client-individual).
#
#   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 ruby consumer.rb [DESTINATION] [COUNT]
#   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
#
# Stops after COUNT messages, or after 5 s without one. Messages received but not ACKed are
# given to another consumer when this connection closes.

require 'stomp'

host = ENV.fetch('STOMP_HOST', '127.0.0.1')
port = Integer(ENV.fetch('STOMP_PORT', '61613'))
# From the environment (or a secret store), never from source. '' = anonymous: the gem then
# sends no login header.
login = ENV.fetch('STOMP_LOGIN', '')
passcode = ENV.fetch('STOMP_PASSCODE', '')
destination = ARGV[0] || '/queue/example'
count = Integer(ARGV[1] || '10')

client = Stomp::Client.new(
  hosts: [{ login: login, passcode: passcode, host: host, port: port }],
  reliable: false,
  connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost', 'heart-beat' => '0,10000' }
)
# A refused CONNECT (wrong passcode: `authentication failed`) is an ERROR frame in place of
# CONNECTED; the gem raises nothing, so look.
if client.connection_frame.command == 'ERROR'
  abort "connect refused: #{client.connection_frame.headers['message']}"
end

inbox = Queue.new
# activemq.prefetchSize caps how many unACKed messages the broker pushes to us.
client.subscribe(destination, id: 'example', ack: 'client-individual',
                              'activemq.prefetchSize' => '10') do |message|
  inbox << message
end

received = 0
while received < count
  # Queue#pop(timeout:) needs Ruby 3.2; poll so this also runs on Debian 12's Ruby 3.1.
  message = nil
  50.times do
    message = inbox.pop(true) rescue nil # rubocop:disable Style/RescueModifier
    break if message

    sleep 0.1
  end
  unless message
    puts 'no message for 5 s, stopping'
    break
  end
  puts "received #{message.body.inspect} message-id=#{message.headers['message-id']}"
  # Client#ack picks the right header per version (1.2: the MESSAGE's `ack` header).
  client.ack(message)
  received += 1
end
client.close
