// Piston clients against a live microbox: piston-client (what Discord bots
// and course sites use) for runtimes and execute, and a plain WebSocket
// client for /api/v2/connect. Usage: node test/piston.mjs http://host:port
// Each check prints one line of what the client did and saw; any failure
// exits 1.
import assert from 'node:assert/strict';
import piston from 'piston-client';
import WebSocket from 'ws';

const server = process.argv[2];
if (!server) {
  console.error('usage: node test/piston.mjs SERVER_URL');
  process.exit(2);
}
const report = (what, seen) => console.log(`${what}: ${JSON.stringify(seen)}`);

// piston-client's own timeouts (3 s to run, 10 s to compile) are Piston's
// defaults; a loaded machine under a software CPU can take longer to
// start a program, so the checks that expect a program to finish ask for
// our maxima, in Piston's milliseconds. Every other default of the client
// stays.
const roomy = { runTimeout: 20000, compileTimeout: 30000 };

async function clientChecks() {
  const client = piston({ server });
  const runtimes = await client.runtimes();
  assert.ok(Array.isArray(runtimes), `runtimes: ${JSON.stringify(runtimes)}`);
  const names = runtimes.map((r) => r.language);
  assert.equal(new Set(names).size, names.length, 'one runtime per language name');
  for (const want of ['python', 'c']) assert.ok(names.includes(want), `${want} in ${names}`);
  report('piston-client runtimes', runtimes.map((r) => `${r.language} ${r.version} [${r.aliases}]`));

  // The client's defaults: text/plain JSON, a file without a name, args
  // 1 2 3, memory limits -1, the version picked from the runtimes.
  let res = await client.execute('python', 'import sys\nprint("hi", sys.argv[1:], input())\n', { ...roomy, stdin: 'there' });
  assert.equal(res.language, 'python', JSON.stringify(res));
  assert.equal(res.run.stdout, "hi ['1', '2', '3'] there\n", JSON.stringify(res));
  assert.equal(res.run.code, 0);
  assert.equal(res.run.signal, null);
  assert.equal(res.compile, undefined, 'no compile stage for an interpreted language');
  assert.ok(res.run.wall_time > 0 && res.run.memory > 0, JSON.stringify(res.run));
  report('piston-client execute python', res);

  // An alias: piston-client finds no version for it and sends none.
  res = await client.execute('py', 'print(6 * 7)', roomy);
  assert.equal(res.run.output, '42\n', JSON.stringify(res));
  report('piston-client execute py (no version sent)', res.run);

  // A compiled language: a compile stage; when it fails, run repeats it.
  res = await client.execute('c', '#include <stdio.h>\nint main(int argc, char **argv) { printf("%d args\\n", argc - 1); return 3; }\n', roomy);
  assert.equal(res.compile.code, 0, JSON.stringify(res));
  assert.equal(res.run.stdout, '3 args\n');
  assert.equal(res.run.code, 3);
  assert.equal(res.run.status, 'RE');
  report('piston-client execute c', res);
  res = await client.execute('c', 'int main(void) { return nope; }\n', roomy);
  assert.notEqual(res.compile.code, 0, JSON.stringify(res));
  assert.match(res.compile.stderr, /nope/);
  assert.deepEqual(res.run, res.compile);
  report('piston-client execute c, compile error', res.compile);

  // A time limit, in Piston's milliseconds (small: under TCG it is scaled
  // by Python's rate, times 40 and more).
  res = await client.execute('python', 'while True: pass\n', { runTimeout: 250 });
  assert.equal(res.run.status, 'TO', JSON.stringify(res.run));
  assert.equal(res.run.signal, 'SIGKILL');
  report('piston-client execute, run_timeout 250', res.run);

  // Errors: 400 and Piston's message.
  let r = await fetch(`${server}/api/v2/execute`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ language: 'klingon', version: '*', files: [{ content: 'x' }] }),
  });
  assert.equal(r.status, 400);
  assert.deepEqual(await r.json(), { message: 'klingon-* runtime is unknown' });
  r = await fetch(`${server}/api/v2/packages`, { method: 'POST', body: '{"language":"python","version":"3.12.0"}' });
  const msg = await r.json();
  assert.equal(r.status, 501);
  assert.match(msg.message, /images build/);
  report('POST /api/v2/packages', { status: r.status, ...msg });
  r = await fetch(`${server}/api/v2/packages`);
  const pkgs = await r.json();
  assert.ok(pkgs.every((p) => p.installed === true && p.language && p.language_version), JSON.stringify(pkgs));
  report('GET /api/v2/packages', pkgs);
}

// connect runs messages over /api/v2/connect: send(ws, msg) is called on
// each message the server sends; it resolves with every message and the
// close code.
function connect(onMessage, first) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${server.replace(/^http/, 'ws')}/api/v2/connect`);
    const msgs = [];
    ws.on('open', () => ws.send(JSON.stringify(first)));
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      msgs.push(m);
      onMessage(ws, m, msgs);
    });
    ws.on('close', (code, reason) => resolve({ msgs, code, reason: reason.toString() }));
    ws.on('error', reject);
  });
}

const out = (msgs, stream) => msgs.filter((m) => m.type === 'data' && m.stream === stream).map((m) => m.data).join('');

async function socketChecks() {
  // A program that asks: its prompt arrives before the answer is sent.
  let res = await connect((ws, m, msgs) => {
    if (m.type === 'data' && out(msgs, 'stdout').includes('name? ') && !ws.answered) {
      ws.answered = true;
      ws.send(JSON.stringify({ type: 'data', stream: 'stdin', data: 'ada\n' }));
    }
  }, { type: 'init', language: 'python', version: '3', files: [{ content: 'import sys\nn = input("name? ")\nprint("hello", n)\nprint("warn", file=sys.stderr)\n' }] });
  assert.equal(res.code, 4999, JSON.stringify(res));
  assert.equal(res.reason, 'Job Completed');
  assert.deepEqual(res.msgs[0].type, 'runtime');
  assert.deepEqual(res.msgs[1], { type: 'stage', stage: 'run' });
  assert.equal(out(res.msgs, 'stdout'), 'name? hello ada\n');
  assert.equal(out(res.msgs, 'stderr'), 'warn\n');
  assert.deepEqual(res.msgs.at(-1), { type: 'exit', stage: 'run', code: 0, signal: null });
  report('connect python with stdin', res);

  // A compiled program: a compile stage, then the run.
  res = await connect(() => {}, { type: 'init', language: 'c', version: '*', files: [{ content: '#include <stdio.h>\nint main(void) { puts("compiled"); return 0; }\n' }] });
  assert.equal(res.code, 4999, JSON.stringify(res));
  assert.deepEqual(res.msgs.filter((m) => m.type === 'stage').map((m) => m.stage), ['compile', 'run']);
  assert.deepEqual(res.msgs.filter((m) => m.type === 'exit').map((m) => [m.stage, m.code]), [['compile', 0], ['run', 0]]);
  assert.equal(out(res.msgs, 'stdout'), 'compiled\n');
  report('connect c', res.msgs.filter((m) => m.type !== 'data'));

  // A signal stops a program that would run on.
  res = await connect((ws, m) => {
    if (m.type === 'data' && m.data.includes('ready')) ws.send(JSON.stringify({ type: 'signal', signal: 'SIGKILL' }));
  }, { type: 'init', language: 'python', files: [{ content: 'import time\nprint("ready", flush=True)\ntime.sleep(600)\n' }] });
  assert.deepEqual(res.msgs.at(-1), { type: 'exit', stage: 'run', code: null, signal: 'SIGKILL' }, JSON.stringify(res));
  assert.equal(res.code, 4999);
  report('connect, signal SIGKILL', res.msgs.at(-1));

  // Piston's close codes.
  for (const [first, code] of [
    [{ type: 'data', stream: 'stdin', data: 'x' }, 4003],
    [{ type: 'init', language: 'klingon', files: [{ content: 'x' }] }, 4002],
  ]) {
    res = await connect(() => {}, first);
    assert.equal(res.code, code, JSON.stringify(res));
    report(`connect, first message ${first.type}`, { code: res.code, reason: res.reason, msgs: res.msgs });
  }
  res = await connect((ws, m) => {
    if (m.type === 'stage') ws.send(JSON.stringify({ type: 'data', stream: 'stdout', data: 'x' }));
  }, { type: 'init', language: 'python', files: [{ content: 'input()' }] });
  assert.equal(res.code, 4004, JSON.stringify(res));
  res = await connect((ws, m) => {
    if (m.type === 'stage') ws.send(JSON.stringify({ type: 'signal', signal: 'SIGNOPE' }));
  }, { type: 'init', language: 'python', files: [{ content: 'input()' }] });
  assert.equal(res.code, 4005, JSON.stringify(res));
  report('connect, bad stream and bad signal', [4004, 4005]);
}

try {
  await clientChecks();
  await socketChecks();
  console.log('piston clients: all checks passed');
} catch (err) {
  console.error(err);
  process.exit(1);
}
