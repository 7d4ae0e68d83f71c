#!/usr/bin/env ruby
# frozen_string_literal: true

# Send messages to stompbox over STOMP 1.2 and wait for a RECEIPT for each one.
#
#   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 ruby producer.rb [DESTINATION] [COUNT]
#   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
#
# A RECEIPT means the broker has taken the message; without one a producer cannot know
# which SEND failed.

require 'stomp'
require 'timeout'

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
  connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost' }
)
# A refused CONNECT (wrong passcode: `authentication failed`) is an ERROR frame in place of
# CONNECTED; the gem raises nothing, so look.
if client.connection_frame.command == 'ERROR'
  abort "connect refused: #{client.connection_frame.headers['message']}"
end

count.times do |i|
  receipt = Queue.new
  # With a block, publish asks for a RECEIPT and calls the block when it arrives.
  client.publish(destination, "hello #{i}", 'content-type' => 'text/plain') { |r| receipt << r }
  Timeout.timeout(10) { receipt.pop }
  puts "sent #{i} to #{destination}"
end
client.close
