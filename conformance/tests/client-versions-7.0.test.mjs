// The multi-version client suite (versions/driver.mjs) for @microsoft/signalr 7.0.14 and @microsoft/signalr-protocol-msgpack 7.0.14.

import { defineClientSuite } from "../versions/driver.mjs";

defineClientSuite("7.0");
