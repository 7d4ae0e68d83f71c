#!/usr/bin/env ruby
# frozen_string_literal: true

# Send messages to stompbox over STOMP 1.2 and wait for a RECEIPT for each one.
#
#   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 ruby producer.rb [DESTINATION] [COUNT]
#
# A RECEIPT means the broker has taken the message; without one a producer cannot know
# which SEND failed.

require 'stomp'
require 'timeout'

host = ENV.fetch('STOMP_HOST', '127.0.0.1')
port = Integer(ENV.fetch('STOMP_PORT', '61613'))
destination = ARGV[0] || '/queue/example'
count = Integer(ARGV[1] || '10')

client = Stomp::Client.new(
  hosts: [{ login: '', passcode: '', host: host, port: port }],
  reliable: false,
  connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost' }
)

count.times do |i|
  receipt = Queue.new
  # With a block, publish asks for a RECEIPT and calls the block when it arrives.
  client.publish(destination, "hello #{i}", 'content-type' => 'text/plain') { |r| receipt << r }
  Timeout.timeout(10) { receipt.pop }
  puts "sent #{i} to #{destination}"
end
client.close
