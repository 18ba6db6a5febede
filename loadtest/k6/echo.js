// Echo over SignalR JSON on WebSockets, the same scenario as `loadtest run echo`: each VU holds
// one connection and invokes the relay hub's Echo method RATE times a second; the round trip
// is the `echo_rtt` trend.
//
//   k6 run -e HUB_URL=http://127.0.0.1:8080/hubs/k6 -e VUS=100 -e RATE=1 -e DURATION=30s loadtest/k6/echo.js

import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { COMPLETION, frame, hubSession, negotiate } from './signalr.js';

const hubUrl = __ENV.HUB_URL || 'http://127.0.0.1:8080/hubs/k6';
const rate = Number(__ENV.RATE || 1);
const session = Number(__ENV.SESSION_SECONDS || __ENV.DURATION_SECONDS || 30);

const echoRtt = new Trend('echo_rtt', true);
const echoes = new Counter('echoes');

export const options = {
  scenarios: {
    echo: { executor: 'constant-vus', vus: Number(__ENV.VUS || 10), duration: __ENV.DURATION || '30s' },
  },
  thresholds: { echo_rtt: ['p(95)<200'], checks: ['rate>0.99'] },
};

export default function () {
  const url = negotiate(hubUrl);
  ws.connect(url, null, (socket) => {
    const sentAt = {};
    let next = 0;
    hubSession(
      socket,
      () =>
        socket.setInterval(() => {
          const id = String(next++);
          sentAt[id] = Date.now();
          socket.send(frame({ type: 1, invocationId: id, target: 'Echo', arguments: [id] }));
        }, 1000 / rate),
      (message) => {
        if (message.type === COMPLETION && message.invocationId in sentAt) {
          echoRtt.add(Date.now() - sentAt[message.invocationId]);
          echoes.add(1);
          check(message, { 'echoed': (m) => m.result === m.invocationId });
          delete sentAt[message.invocationId];
        }
      },
    );
    socket.setTimeout(() => socket.close(), session * 1000);
  });
}
