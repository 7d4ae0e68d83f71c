// What the browser tests of tests/console/ share: a broker on ports it picks (or given ones, to
// restart it in place), a raw STOMP 1.2 client over TCP, page helpers that say what they saw
// when they time out, and Chromium through playwright-core. Not a test file itself
// (`node --test` runs only *.test.mjs here).
//
// A missing piece (Chromium, playwright-core, the broker binary) fails the test that needs it,
// saying so: a test that cannot run is never reported as passed.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BROKER = process.env.STOMPBOX_BIN || path.join(ROOT, "target/debug/stompbox");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Generous: a debug broker and a browser share two cores with other tests.
export const WAIT_MS = 15_000;

// Children we started, killed however the process ends (a failed assertion, a signal).
const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

export function chromiumMissing() {
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
    return null;
  } catch {
    return `Chromium not found at ${CHROMIUM} (\`make console-deps\` installs Debian's ` +
      "chromium; set CHROMIUM=/path to use another)";
  }
}

// --- broker -------------------------------------------------------------------------------

// Starts the broker on ports it picks, with `config` (TOML text) when given. With `restart`,
// a broker that has stopped (`killBroker`), it starts again on that one's addresses, data dir
// and config: to its clients, the same broker back after a crash.
export async function startBroker(config = null, { restart = null } = {}) {
  assert.ok(fs.existsSync(BROKER), `no broker binary at ${BROKER}: run \`cargo build\` first`);
  const dir = restart?.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "stompbox-console-"));
  const log = fs.openSync(path.join(dir, "broker.log"), "a");
  const args = ["serve", "--bind", restart?.stomp ?? "127.0.0.1:0", "--admin-bind", restart?.admin ?? "127.0.0.1:0",
    "--ws-bind", restart?.ws ?? "127.0.0.1:0", "--data-dir", path.join(dir, "data"), "--cores", "2"];
  config ??= restart?.config ?? null;
  if (config !== null) {
    fs.writeFileSync(path.join(dir, "stompbox.toml"), config);
    args.push("--config", path.join(dir, "stompbox.toml"));
  }
  const child = spawn(BROKER, args,
  { stdio: ["ignore", "pipe", log], env: { RUST_LOG: "info", ...process.env } });
  children.add(child);
  fs.closeSync(log);
  const broker = { child, dir, config, stomp: null, admin: null, ws: null };
  const logTail = () => fs.readFileSync(path.join(dir, "broker.log"), "utf8").slice(-4000);
  // Both lines: `stompbox listening stomp=… ws=…`, then `stompbox admin http=…`.
  const lines = readline.createInterface({ input: child.stdout });
  const ready = new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      broker.stomp ??= line.match(/^stompbox listening stomp=(\S+)/)?.[1] ?? null;
      broker.ws ??= line.match(/^stompbox listening .* ws=(\S+)/)?.[1] ?? null;
      broker.admin ??= line.match(/^stompbox admin http=(\S+)/)?.[1] ?? null;
      if (broker.stomp && broker.admin) resolve();
    });
    child.on("exit", (code) => reject(new Error(`broker exited (${code}) before it was ready\n${logTail()}`)));
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`broker not ready in 30 s\n${logTail()}`)), 30_000);
  });
  try {
    await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
  broker.logTail = logTail;
  return broker;
}

// An argon2id hash of `passcode` for a [security] user, made as an operator does: `stompbox
// passwd`, reading the passcode from a pipe.
export function passwordHash(passcode) {
  assert.ok(fs.existsSync(BROKER), `no broker binary at ${BROKER}: run \`cargo build\` first`);
  const hash = execFileSync(BROKER, ["passwd"], { input: `${passcode}\n`, encoding: "utf8" }).trim();
  assert.match(hash, /^\$argon2id\$/, "stompbox passwd printed an argon2id hash");
  return hash;
}

// kill -9: the broker gets no chance to close anything; its dir stays for `restart`.
export async function killBroker(broker) {
  const { child } = broker;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }
  children.delete(child);
}

export async function stopBroker(broker) {
  const { child } = broker;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  children.delete(child);
  fs.rmSync(broker.dir, { recursive: true, force: true });
}

// --- a raw STOMP 1.2 client -----------------------------------------------------------------

export class Stomp {
  static async connect(address, headers = {}) {
    const [host, port] = [address.slice(0, address.lastIndexOf(":")), address.slice(address.lastIndexOf(":") + 1)];
    const socket = net.connect(Number(port), host);
    await once(socket, "connect");
    const c = new Stomp(socket);
    c.send("CONNECT", { "accept-version": "1.2", host: "localhost", ...headers });
    await c.expect("CONNECTED");
    return c;
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    socket.on("data", (chunk) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      for (let end; (end = this.buf.indexOf(0)) >= 0;) {
        const text = this.buf.subarray(0, end).toString("utf8").replace(/^[\r\n]+/, "");
        this.buf = this.buf.subarray(end + 1);
        const [head, ...rest] = text.split("\n\n");
        const [command, ...lines] = head.split("\n");
        const hdrs = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));
        this.frames.push({ command, headers: hdrs, body: rest.join("\n\n") });
      }
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  send(command, headers = {}, body = "") {
    const head = Object.entries(headers).map(([k, v]) => `${k}:${v}\n`).join("");
    this.socket.write(`${command}\n${head}\n${body}\0`);
  }

  // The next frame, which must be `command`.
  async expect(command) {
    const deadline = Date.now() + WAIT_MS;
    while (this.frames.length === 0) {
      assert.ok(Date.now() < deadline, `no ${command} frame within ${WAIT_MS} ms`);
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 100); });
    }
    const f = this.frames.shift();
    assert.equal(f.command, command, `expected ${command}, got ${JSON.stringify(f)}`);
    return f;
  }

  close() {
    this.socket.destroy();
  }
}

// --- page helpers -------------------------------------------------------------------------

// Waits until the element at `selector` has exactly `text`, and says what it had if not.
export async function waitText(page, selector, text) {
  try {
    await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent.trim() === t,
      [selector, String(text)], { timeout: WAIT_MS, polling: 100 });
  } catch (e) {
    const had = await page.evaluate((s) => document.querySelector(s)?.textContent ?? "(no element)", selector);
    throw new Error(`${selector}: wanted ${JSON.stringify(String(text))}, have ${JSON.stringify(had)}`, { cause: e });
  }
}

export async function waitCount(page, selector, n) {
  try {
    await page.waitForFunction(([s, k]) => document.querySelectorAll(s).length === k,
      [selector, n], { timeout: WAIT_MS, polling: 100 });
  } catch (e) {
    const had = await page.evaluate((s) => document.querySelectorAll(s).length, selector);
    throw new Error(`${selector}: wanted ${n} elements, have ${had}`, { cause: e });
  }
}

// --- the browser --------------------------------------------------------------------------

export async function loadPlaywright() {
  const missing = chromiumMissing();
  if (missing) {
    throw new Error(missing);
  }
  try {
    return (await import("playwright-core")).chromium;
  } catch (e) {
    throw new Error("cannot load playwright-core: run `make console-deps` " +
      `(npm ci in tests/console): ${e.message}`);
  }
}

export async function launch(chromium, userDataDir) {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
