// Logs in to a running chatd over its WebSocket with the browser OPAQUE package
// `@serenity-kit/opaque`, exactly as a web client would, and optionally joins a room and
// sends one message. It proves that the daemon's OPAQUE suite and wire encoding match what
// browsers use; the Rust integration tests (tests/tests/it/interop.rs) run it.
//
// Usage: node login.mjs URL USER PASSWORD [ROOM [BODY]]
//
// Prints exactly one JSON line on stdout:
//   success:        {"ok":true,"user":"alice","welcome":{...},"server_static_public_key":"...",
//                    "joined":{...},"acked":{...}}          ("joined"/"acked" only with ROOM)
//   login refused:  {"ok":false,"error":{...the server's error frame...}}
//   anything else:  {"ok":false,"fatal":"what went wrong"}
// Exit code: 0 on success, 1 when the login is refused, 2 on any other failure.
// Every wait for the server is bounded by 20 seconds.

import { randomBytes } from "node:crypto";

import * as opaque from "@serenity-kit/opaque";
import WebSocket from "ws";

const TIMEOUT_MS = 20_000;
const PROTOCOL_VERSION = 1;
// KE3 (CredentialFinalization) is 64 bytes in chatd's cipher suite.
const KE3_BYTES = 64;

const EXIT_OK = 0;
const EXIT_LOGIN_REFUSED = 1;
const EXIT_OTHER = 2;

/** A failure that is not the server refusing the login: bad arguments, I/O, timeouts. */
class Fatal extends Error {}

/** The server refused the login; `frame` is its `error` frame. */
class LoginRefused extends Error {
  constructor(frame, extra = {}) {
    super(`login refused: ${frame.code}`);
    this.frame = frame;
    this.extra = extra;
  }
}

function finish(result, exitCode) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(exitCode);
}

/**
 * One WebSocket connection that queues incoming frames, so a reply that arrives before
 * anyone waits for it is not lost, and events between replies can be skipped.
 */
class Connection {
  constructor(socket) {
    this.socket = socket;
    this.frames = [];
    this.waiter = null;
    this.closed = null;
    socket.on("message", (data, isBinary) => {
      if (isBinary) {
        this.fail(new Fatal("the server sent a binary WebSocket message"));
        return;
      }
      let frame;
      try {
        frame = JSON.parse(data.toString("utf8"));
      } catch (error) {
        this.fail(new Fatal(`the server sent invalid JSON: ${error.message}`));
        return;
      }
      this.frames.push(frame);
      this.wake();
    });
    socket.on("close", (code, reason) => {
      this.closed = new Fatal(`the connection closed with code ${code} (${reason.toString() || "no reason"})`);
      this.wake();
    });
    socket.on("error", (error) => this.fail(new Fatal(`WebSocket error: ${error.message}`)));
  }

  static open(url) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { handshakeTimeout: TIMEOUT_MS });
      socket.once("open", () => resolve(new Connection(socket)));
      socket.once("error", (error) => reject(new Fatal(`cannot connect to ${url}: ${error.message}`)));
    });
  }

  send(frame) {
    this.socket.send(JSON.stringify(frame));
  }

  fail(error) {
    this.closed ??= error;
    this.wake();
  }

  wake() {
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = null;
      waiter();
    }
  }

  /** Waits for the first queued frame `pick` accepts; other frames (events) are dropped. */
  async next(what, pick) {
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      while (this.frames.length > 0) {
        const frame = this.frames.shift();
        if (pick(frame)) {
          return frame;
        }
      }
      if (this.closed) {
        throw new Fatal(`waiting for ${what}: ${this.closed.message}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Fatal(`timed out after ${TIMEOUT_MS / 1000} s waiting for ${what}`);
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * Sends a request with `rid` and waits for its reply. Replies carry the request's rid; an
   * `error` without a rid answers a frame the server could not attribute, which here can
   * only be this request.
   */
  async request(frame, what) {
    this.send(frame);
    return this.next(what, (reply) => reply.rid === frame.rid || (reply.type === "error" && reply.rid === undefined));
  }

  /** Closes with 1000 (normal) and waits, bounded, for the server's close frame. */
  async close() {
    if (this.socket.readyState === WebSocket.CLOSED) {
      return;
    }
    const closed = new Promise((resolve) => this.socket.once("close", resolve));
    this.socket.close(1000);
    let timer;
    const bounded = new Promise((resolve) => {
      timer = setTimeout(resolve, TIMEOUT_MS);
    });
    await Promise.race([closed, bounded]);
    clearTimeout(timer);
  }
}

function expectType(reply, type, what) {
  if (reply.type !== type) {
    throw new Fatal(`expected ${type} after ${what}, got ${JSON.stringify(reply)}`);
  }
  return reply;
}

async function login(connection, user, password) {
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const challenge = await connection.request(
    { type: "login_start", rid: "1", user, ke1: startLoginRequest },
    "login_challenge",
  );
  if (challenge.type === "error") {
    throw new LoginRefused(challenge);
  }
  expectType(challenge, "login_challenge", "login_start");

  // The key stretching is left at the package's default: chatd's suite is defined as that
  // default, so a browser that passes no option must be able to log in.
  const finished = opaque.client.finishLogin({ clientLoginState, loginResponse: challenge.ke2, password });
  if (finished === undefined) {
    // The package has already detected a wrong password (or unknown user); a browser would
    // stop here. A KE3 of random bytes, which proves no password, is sent anyway so the
    // result shows the server's own verdict as well.
    const refusal = await connection.request(
      { type: "login_finish", rid: "2", ke3: randomBytes(KE3_BYTES).toString("base64url") },
      "the answer to a random KE3",
    );
    if (refusal.type === "error") {
      throw new LoginRefused(refusal, { finish_login: "rejected the server's response" });
    }
    throw new Fatal(`finishLogin failed locally but the server answered a random KE3 with ${JSON.stringify(refusal)}`);
  }

  const welcome = await connection.request(
    { type: "login_finish", rid: "2", ke3: finished.finishLoginRequest },
    "welcome",
  );
  if (welcome.type === "error") {
    throw new LoginRefused(welcome);
  }
  expectType(welcome, "welcome", "login_finish");
  return { welcome, serverStaticPublicKey: finished.serverStaticPublicKey };
}

async function joinAndSend(connection, room, body) {
  const joined = expectType(await connection.request({ type: "join", rid: "3", room }, "joined"), "joined", "join");
  const cmid = `node-${randomBytes(8).toString("hex")}`;
  const acked = expectType(
    await connection.request({ type: "send", rid: "4", room, cmid, body }, "acked"),
    "acked",
    "send",
  );
  return { joined: { room: joined.room, online: joined.online, last_seq: joined.last_seq }, acked };
}

async function main(argv) {
  if (argv.length < 3 || argv.length > 5) {
    throw new Fatal("usage: node login.mjs URL USER PASSWORD [ROOM [BODY]]");
  }
  const [url, user, password, room, body = "hello from @serenity-kit/opaque"] = argv;
  await opaque.ready;

  const connection = await Connection.open(url);
  try {
    connection.send({ type: "hello", version: PROTOCOL_VERSION, client: "chatd-interop/0.1.0" });
    const hello = await connection.next("hello", (frame) => frame.type === "hello" || frame.type === "error");
    expectType(hello, "hello", "hello");

    const { welcome, serverStaticPublicKey } = await login(connection, user, password);
    const result = { ok: true, user: welcome.user, welcome, server_static_public_key: serverStaticPublicKey };
    if (room !== undefined) {
      Object.assign(result, await joinAndSend(connection, room, body));
    }
    return result;
  } finally {
    await connection.close();
  }
}

try {
  finish(await main(process.argv.slice(2)), EXIT_OK);
} catch (error) {
  if (error instanceof LoginRefused) {
    finish({ ok: false, error: error.frame, ...error.extra }, EXIT_LOGIN_REFUSED);
  }
  const message = error instanceof Fatal ? error.message : `unexpected failure: ${error?.stack ?? error}`;
  process.stderr.write(`login.mjs: ${message}\n`);
  finish({ ok: false, fatal: message }, EXIT_OTHER);
}
