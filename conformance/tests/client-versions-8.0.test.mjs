// The multi-version client suite (versions/driver.mjs) for @microsoft/signalr 8.0.29 and @microsoft/signalr-protocol-msgpack 8.0.29.

import { defineClientSuite } from "../versions/driver.mjs";

defineClientSuite("8.0");
