// Group broadcast over SignalR JSON on WebSockets, the same scenario as `loadtest run
// broadcast`: SUBSCRIBERS connections join one group, one publisher sends RATE messages a
// second to it with the send time in the payload; `delivery_latency` is the time from send to
// receipt on every subscriber, `deliveries` counts them.
//
//   k6 run -e HUB_URL=http://127.0.0.1:8080/hubs/k6 -e SUBSCRIBERS=1000 -e RATE=10 loadtest/k6/broadcast.js

import ws from 'k6/ws';
import { Counter, Trend } from 'k6/metrics';
import { INVOCATION, frame, handshake, hubSession, negotiate } from './signalr.js';

const hubUrl = __ENV.HUB_URL || 'http://127.0.0.1:8080/hubs/k6';
const group = __ENV.GROUP || 'k6-broadcast';
const rate = Number(__ENV.RATE || 10);
const seconds = Number(__ENV.SECONDS || 30);

const deliveryLatency = new Trend('delivery_latency', true);
const deliveries = new Counter('deliveries');
const published = new Counter('published');

export const options = {
  scenarios: {
    subscribers: {
      executor: 'per-vu-iterations', exec: 'subscriber', vus: Number(__ENV.SUBSCRIBERS || 100), iterations: 1,
      maxDuration: `${seconds + 30}s`,
    },
    publisher: {
      executor: 'per-vu-iterations', exec: 'publisher', vus: 1, iterations: 1, startTime: '3s',
      maxDuration: `${seconds + 30}s`,
    },
  },
  thresholds: { delivery_latency: ['p(99)<500'], checks: ['rate>0.99'] },
};

// Joins the group, then records every delivery until the run ends.
export function subscriber() {
  ws.connect(negotiate(hubUrl), null, (socket) => {
    hubSession(
      socket,
      () => socket.send(frame({ type: 1, target: 'JoinGroup', arguments: [group] })),
      (message) => {
        if (message.type === INVOCATION && message.target === 'tick') {
          deliveryLatency.add(Date.now() - message.arguments[0]);
          deliveries.add(1);
        }
      },
    );
    socket.setTimeout(() => socket.close(), (seconds + 5) * 1000);
  });
}

// Sends RATE messages a second to the group for SECONDS.
export function publisher() {
  ws.connect(negotiate(hubUrl), null, (socket) => {
    socket.on('open', () => socket.send(handshake()));
    socket.on('message', () => {});
    socket.setInterval(() => {
      socket.send(frame({ type: 1, target: 'SendToGroup', arguments: [group, 'tick', Date.now()] }));
      published.add(1);
    }, 1000 / rate);
    socket.setTimeout(() => socket.close(), seconds * 1000);
  });
}
