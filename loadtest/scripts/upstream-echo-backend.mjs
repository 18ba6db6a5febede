// The trivial backend of the upstream benchmark: answers every `messages` event with a
// Completion carrying the invocation's first argument (JSON clients), and every other event
// with 200. Prints `listening on PORT` once it accepts requests.
import { createServer } from "node:http";

const server = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
        if (request.headers["x-asrs-category"] !== "messages") {
            response.writeHead(200).end();
            return;
        }
        const { invocationId, arguments: args } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        if (invocationId === undefined) {
            response.writeHead(204).end();
            return;
        }
        const body = JSON.stringify({ type: 3, invocationId, result: args[0] ?? null }) + "\u001e";
        response.writeHead(200, { "content-type": "application/json" }).end(body);
    });
});
server.keepAliveTimeout = 120_000;
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
