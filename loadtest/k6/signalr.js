// The few pieces of the SignalR protocol the k6 scripts need: negotiate, the JSON hub
// protocol's handshake and record framing over k6's WebSocket API. JSON over WebSockets only.

import { check } from 'k6';
import http from 'k6/http';

export const RECORD_SEPARATOR = '\x1e';

// Negotiates (version 1) and returns the WebSocket URL of the new connection.
export function negotiate(hubUrl) {
  const response = http.post(`${hubUrl}/negotiate?negotiateVersion=1`);
  if (response.status !== 200) {
    throw new Error(`negotiate answered ${response.status}`);
  }
  const token = response.json('connectionToken');
  return `${hubUrl.replace(/^http/, 'ws')}?id=${encodeURIComponent(token)}`;
}

// The handshake request for the JSON hub protocol.
export function handshake() {
  return JSON.stringify({ protocol: 'json', version: 1 }) + RECORD_SEPARATOR;
}

// Runs the hub session on an open-to-be WebSocket: sends the handshake when the socket opens,
// checks the server's answer ('handshake accepted'), then calls `accepted()` once and
// `received(message)` for every message after it.
export function hubSession(socket, accepted, received) {
  let open = false;
  socket.on('open', () => socket.send(handshake()));
  socket.on('message', (data) => {
    for (const message of records(data)) {
      if (!open) {
        open = true;
        check(message, { 'handshake accepted': (m) => !m.error });
        accepted();
      } else {
        received(message);
      }
    }
  });
}

// One framed hub message.
export function frame(message) {
  return JSON.stringify(message) + RECORD_SEPARATOR;
}

// The messages in one WebSocket text frame (a frame may hold several records).
export function records(data) {
  return data.split(RECORD_SEPARATOR).filter((r) => r.length > 0).map((r) => JSON.parse(r));
}

export const INVOCATION = 1;
export const COMPLETION = 3;
export const PING = 6;
export const CLOSE = 7;
