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
        quirks: [
            "on Node 18+ the client needs `globalThis.self` defined before it is loaded (a client bug: it reads `self` when it finds a global `fetch`); the test sets `globalThis.self = globalThis`",
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
        quirks: [],
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
