// The demo chat page's script: the official @microsoft/signalr browser client, talking to the
// relay hub at `hubs/demo` (relative to the page, so it also works behind a path prefix).
//
// Joining a room is `JoinGroup(room)`; a message is `SendToGroup(room, "demoMessage", name,
// node, text)`, so it reaches the room's members on every node. The node is the part of the
// connection id before the last `.` (ids are `{node}.{random}`). After an automatic reconnect,
// possibly to another node, the page learns its node again and rejoins its room.
import { HubConnectionBuilder, LogLevel } from "@microsoft/signalr";

const TARGET = "demoMessage";
const $ = (id) => document.getElementById(id);

const state = { room: null, node: null };

const connection = new HubConnectionBuilder()
    .withUrl("hubs/demo")
    .withAutomaticReconnect()
    .configureLogging(LogLevel.Warning)
    .build();

function setStatus(text, kind = "ok") {
    const status = $("status");
    status.textContent = text;
    status.dataset.kind = kind;
}

function describe() {
    const where = `node ${state.node}`;
    return state.room ? `in room “${state.room}” on ${where}` : `connected to ${where}`;
}

/** Appends one line to the message list; text only, never HTML. */
function show(name, node, text, kind = "message") {
    const item = document.createElement("li");
    item.className = kind;
    if (kind === "message") {
        const who = document.createElement("b");
        who.textContent = String(name);
        const via = document.createElement("span");
        via.className = "node";
        via.textContent = ` @${node}`;
        item.append(who, via, `: ${text}`);
    } else {
        item.textContent = text;
    }
    const list = $("messages");
    list.append(item);
    list.scrollTop = list.scrollHeight;
}

async function learnNode() {
    const id = await connection.invoke("GetConnectionId");
    state.node = id.slice(0, id.lastIndexOf("."));
    $("node").textContent = state.node;
}

async function join(event) {
    event.preventDefault();
    const room = $("room").value.trim();
    if (!room || !$("name").value.trim()) {
        return;
    }
    try {
        if (state.room && state.room !== room) {
            await connection.invoke("LeaveGroup", state.room);
        }
        await connection.invoke("JoinGroup", room);
        state.room = room;
        $("text").disabled = $("send").disabled = false;
        $("text").focus();
        setStatus(describe());
        show(null, null, `You joined “${room}” on node ${state.node}.`, "notice");
    } catch (error) {
        setStatus(`Could not join: ${error.message}`, "error");
    }
}

async function send(event) {
    event.preventDefault();
    const text = $("text").value;
    if (!text || !state.room) {
        return;
    }
    try {
        await connection.invoke("SendToGroup", state.room, TARGET, $("name").value.trim(), state.node, text);
        $("text").value = "";
    } catch (error) {
        setStatus(`Could not send: ${error.message}`, "error");
    }
}

connection.on(TARGET, (name, node, text) => show(name, node, text));
connection.onreconnecting(() => setStatus("Connection lost; reconnecting…", "warn"));
connection.onreconnected(async () => {
    try {
        await learnNode();
        if (state.room) {
            await connection.invoke("JoinGroup", state.room);
        }
        setStatus(`Reconnected, ${describe()}`);
    } catch (error) {
        setStatus(`Reconnected, but: ${error.message}`, "error");
    }
});
connection.onclose((error) => setStatus(`Disconnected${error ? `: ${error.message}` : ""}. Reload to retry.`, "error"));

$("join-form").addEventListener("submit", join);
$("send-form").addEventListener("submit", send);

connection
    .start()
    .then(learnNode)
    .then(() => {
        $("join").disabled = false;
        setStatus(describe());
    })
    .catch((error) => setStatus(`Could not connect: ${error.message}`, "error"));
