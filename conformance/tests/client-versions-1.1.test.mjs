// The multi-version client suite (versions/driver.mjs) for @aspnet/signalr 1.1.4 and @aspnet/signalr-protocol-msgpack 1.1.0.

import { defineClientSuite } from "../versions/driver.mjs";

defineClientSuite("1.1");
