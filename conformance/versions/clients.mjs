// The official JavaScript SignalR clients the multi-version suite runs against the gateway, and
// what each of them supports. Every client is installed side by side under an npm alias
// (package.json); each msgpack package gets a private copy of its own client version through
// package.json "overrides", so no version is ever mixed with another.
//
// One row per client version. `transports` and `protocols` list what the version supports in
// Node; the suite runs every transport × protocol pair except MessagePack over Server-Sent
// Events (SSE carries text only).

export const TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"];
export const PROTOCOLS = ["json", "messagepack"];

/**
 * @typedef {object} ClientVersion
 * @property {string} key          short name used in test names and file names
 * @property {string} label        what a user installs
 * @property {string} module       import specifier of the client (npm alias)
 * @property {string} version      exact version of the client (checked against node_modules)
 * @property {string} msgpackModule import specifier of its MessagePack protocol package
 * @property {string} msgpackVersion exact version of that package
 * @property {boolean} automaticReconnect  has `withAutomaticReconnect()` (3.0+)
 * @property {boolean} statefulReconnect   has `withStatefulReconnect()` (8.0+)
 * @property {"Buffer"|"Uint8Array"} msgpackBinary what a MessagePack `bin` value arrives as
 *   (msgpack5 in 1.1-5.0 gives a Node Buffer, @msgpack/msgpack in 6.0+ a plain Uint8Array)
 * @property {string[]} quirks      client-side quirks the suite works around
 */

/** @type {ClientVersion[]} */
export const CLIENT_VERSIONS = [
    {
        key: "1.1",
        label: "@aspnet/signalr",
        module: "signalr-v1",
        version: "1.1.4",
        msgpackModule: "signalr-msgpack-v1",
        msgpackLabel: "@aspnet/signalr-protocol-msgpack",
        msgpackVersion: "1.1.0",
        automaticReconnect: false,
        statefulReconnect: false,
        msgpackBinary: "Buffer",
        quirks: [
            "no automatic reconnect (added in 3.0): after the server restarts the connection closes and the app must call start() again",
            "no HubConnection.connectionId (added in 3.0)",
        ],
    },
    {
        key: "3.1",
        label: "@microsoft/signalr",
        module: "signalr-v3",
        version: "3.1.31",
        msgpackModule: "signalr-msgpack-v3",
        msgpackLabel: "@microsoft/signalr-protocol-msgpack",
        msgpackVersion: "3.1.14",
        automaticReconnect: true,
        statefulReconnect: false,
        msgpackBinary: "Buffer",
        quirks: ["the newest 3.1 MessagePack package is 3.1.14 (the client goes on to 3.1.31)"],
    },
    {
        key: "5.0",
        label: "@microsoft/signalr",
        module: "signalr-v5",
        version: "5.0.17",
        msgpackModule: "signalr-msgpack-v5",
        msgpackLabel: "@microsoft/signalr-protocol-msgpack",
        msgpackVersion: "5.0.17",
        automaticReconnect: true,
        statefulReconnect: false,
        msgpackBinary: "Buffer",
        quirks: [
            "on Node 18+ `HubConnectionBuilder.build()` throws `ReferenceError: self is not defined` (a client bug: with a global `fetch` it calls `fetch.bind(self)`); define `globalThis.self = globalThis` first, as the test does",
        ],
    },
    {
        key: "6.0",
        label: "@microsoft/signalr",
        module: "signalr-v6",
        version: "6.0.25",
        msgpackModule: "signalr-msgpack-v6",
        msgpackLabel: "@microsoft/signalr-protocol-msgpack",
        msgpackVersion: "6.0.25",
        automaticReconnect: true,
        statefulReconnect: false,
        msgpackBinary: "Uint8Array",
        quirks: [],
    },
    {
        key: "7.0",
        label: "@microsoft/signalr",
        module: "signalr-v7",
        version: "7.0.14",
        msgpackModule: "signalr-msgpack-v7",
        msgpackLabel: "@microsoft/signalr-protocol-msgpack",
        msgpackVersion: "7.0.14",
        automaticReconnect: true,
        statefulReconnect: false,
        msgpackBinary: "Uint8Array",
        quirks: ["from 7.0 on, a value returned by an `on()` handler is sent as a client result; for a plain send the client logs `Result given for 'x' method but server is not expecting a result`, so handlers should return nothing"],
    },
    {
        key: "8.0",
        label: "@microsoft/signalr",
        module: "signalr-v8",
        version: "8.0.29",
        msgpackModule: "signalr-msgpack-v8",
        msgpackLabel: "@microsoft/signalr-protocol-msgpack",
        msgpackVersion: "8.0.29",
        automaticReconnect: true,
        statefulReconnect: true,
        msgpackBinary: "Uint8Array",
        quirks: [],
    },
    {
        key: "10.0",
        label: "@microsoft/signalr",
        module: "@microsoft/signalr",
        version: "10.0.11",
        msgpackModule: "@microsoft/signalr-protocol-msgpack",
        msgpackLabel: "@microsoft/signalr-protocol-msgpack",
        msgpackVersion: "10.0.11",
        automaticReconnect: true,
        statefulReconnect: true,
        msgpackBinary: "Uint8Array",
        quirks: [],
    },
];

/** The table row for `key` ("1.1", "3.1", ..., "10.0"). */
export function clientVersion(key) {
    const row = CLIENT_VERSIONS.find((candidate) => candidate.key === key);
    if (!row) {
        throw new Error(`no client version '${key}' in conformance/versions/clients.mjs`);
    }
    return row;
}

/** Every transport × protocol pair a version runs (no MessagePack over Server-Sent Events). */
export function combinations() {
    const pairs = [];
    for (const transport of TRANSPORTS) {
        for (const protocol of PROTOCOLS) {
            if (transport === "ServerSentEvents" && protocol === "messagepack") {
                continue;
            }
            pairs.push({ transport, protocol });
        }
    }
    return pairs;
}
