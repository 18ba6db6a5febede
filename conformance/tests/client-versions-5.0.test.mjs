// The multi-version client suite (versions/driver.mjs) for @microsoft/signalr 5.0.17 and @microsoft/signalr-protocol-msgpack 5.0.17.

import { defineClientSuite } from "../versions/driver.mjs";

// Client bug in @microsoft/signalr 5.0: on Node 18+ (which has a global fetch) its HTTP client
// calls `fetch.bind(self)`, and Node has no `self`, so HubConnectionBuilder.build() throws
// "ReferenceError: self is not defined". Apps on Node need this line; so does this test.
globalThis.self ??= globalThis;

defineClientSuite("5.0");
