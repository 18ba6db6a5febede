// The multi-version client suite (versions/driver.mjs) for @microsoft/signalr 10.0.11 and @microsoft/signalr-protocol-msgpack 10.0.11.

import { defineClientSuite } from "../versions/driver.mjs";

defineClientSuite("10.0");
