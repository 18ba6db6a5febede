// The multi-version client suite (versions/driver.mjs) for @microsoft/signalr 6.0.25 and @microsoft/signalr-protocol-msgpack 6.0.25.

import { defineClientSuite } from "../versions/driver.mjs";

defineClientSuite("6.0");
