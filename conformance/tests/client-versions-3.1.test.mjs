// The multi-version client suite (versions/driver.mjs) for @microsoft/signalr 3.1.31 and @microsoft/signalr-protocol-msgpack 3.1.14.

import { defineClientSuite } from "../versions/driver.mjs";

defineClientSuite("3.1");
