// E2B's own SDKs against a microbox serve: `node sdk.mjs <check>`, with
// E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL pointing at it (and
// E2B_OTHER_KEY, a second tenant's key). api/e2b_test.go runs each check
// as a test of its own; a check throws on failure, exiting non-zero.
import assert from 'node:assert/strict'
import { Sandbox as Base, CommandExitError, NotFoundError } from 'e2b'
import { Sandbox } from '@e2b/code-interpreter'

const checks = {
  // Sandbox.create() with the SDK's defaults, then info, list, health.
  async create() {
    const sbx = await Base.create()
    try {
      assert.ok(sbx.sandboxId, 'a sandbox id')
      assert.equal(await sbx.isRunning(), true)
      const info = await sbx.getInfo()
      assert.equal(info.sandboxId, sbx.sandboxId)
      assert.equal(info.templateId, 'base')
      assert.equal(info.state, 'running')
      const listed = await Base.list().nextItems()
      assert.ok(listed.some((s) => s.sandboxId === sbx.sandboxId), 'listed')
    } finally {
      await sbx.kill()
    }
  },

  // A stateful Python kernel: x = 41, then x + 1 is 42; output streams;
  // an exception comes back with its name, value and traceback.
  async runcode() {
    const sbx = await Sandbox.create()
    try {
      const first = await sbx.runCode('x = 41')
      assert.equal(first.error, undefined)
      const second = await sbx.runCode('x + 1')
      assert.equal(second.text, '42')
      const lines = []
      const printed = await sbx.runCode('import sys\nprint("out", x)\nprint("err", file=sys.stderr)', {
        onStdout: (m) => lines.push(m.line),
      })
      assert.deepEqual(printed.logs.stdout.join(''), 'out 41\n')
      assert.deepEqual(printed.logs.stderr.join(''), 'err\n')
      assert.ok(lines.join('').includes('out 41'), 'onStdout saw the line')
      const failed = await sbx.runCode('def f():\n    return 1 / 0\nf()')
      assert.equal(failed.error.name, 'ZeroDivisionError')
      assert.equal(failed.error.value, 'division by zero')
      assert.match(failed.error.traceback, /return 1 \/ 0/)
      // A context is a kernel of its own.
      const ctx = await sbx.createCodeContext()
      const other = await sbx.runCode('x = 1\nx', { context: ctx })
      assert.equal(other.text, '1')
      assert.equal((await sbx.runCode('x')).text, '41')
      assert.ok((await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
      await sbx.removeCodeContext(ctx)
      // Bash cells run too, statelessly.
      const sh = await sbx.runCode('echo $((6 * 7))', { language: 'bash' })
      assert.equal(sh.logs.stdout.join(''), '42\n')
    } finally {
      await sbx.kill()
    }
  },

  // files.write, files.read, files.list, and the filesystem service.
  async files() {
    const sbx = await Base.create()
    try {
      const w = await sbx.files.write('/home/user/hello.txt', 'hello from e2b\n')
      assert.equal(w.name, 'hello.txt')
      assert.equal(await sbx.files.read('/home/user/hello.txt'), 'hello from e2b\n')
      assert.equal(await sbx.files.read('hello.txt'), 'hello from e2b\n', 'relative to home')
      await sbx.files.write([{ path: 'data/a.csv', data: 'a,b\n1,2\n' }, { path: 'data/b.bin', data: new Uint8Array([0, 1, 2, 255]) }])
      const bytes = await sbx.files.read('data/b.bin', { format: 'bytes' })
      assert.deepEqual([...bytes], [0, 1, 2, 255])
      const entries = await sbx.files.list('/home/user')
      const hello = entries.find((e) => e.name === 'hello.txt')
      assert.ok(hello, 'hello.txt listed: ' + JSON.stringify(entries))
      assert.equal(hello.type, 'file')
      assert.equal(hello.size, 15)
      assert.ok(entries.some((e) => e.name === 'data' && e.type === 'dir'))
      assert.equal(await sbx.files.makeDir('made/deep'), true)
      assert.equal(await sbx.files.makeDir('made/deep'), false, 'already there')
      assert.equal(await sbx.files.exists('hello.txt'), true)
      await sbx.files.rename('hello.txt', 'made/hello.txt')
      assert.equal((await sbx.files.getInfo('made/hello.txt')).size, 15)
      await sbx.files.remove('made')
      assert.equal(await sbx.files.exists('made/hello.txt'), false)
      await assert.rejects(sbx.files.read('nothing-here'), NotFoundError)
    } finally {
      await sbx.kill()
    }
  },

  // commands.run("ls -la /box"), and onStdout called while the command
  // still runs: it waits for a file the callback writes.
  async commands() {
    const sbx = await Base.create()
    try {
      await sbx.files.write('seen.txt', 'x')
      const ls = await sbx.commands.run('ls -la /box')
      assert.equal(ls.exitCode, 0)
      assert.match(ls.stdout, /seen\.txt/)
      let wrote
      const out = []
      const res = await sbx.commands.run('echo ready; while [ ! -f /box/go ]; do sleep 0.05; done; echo done', {
        onStdout: (line) => {
          out.push(line)
          if (!wrote && line.includes('ready')) wrote = sbx.files.write('go', '1')
        },
      })
      await wrote
      assert.equal(res.exitCode, 0)
      assert.equal(res.stdout, 'ready\ndone\n')
      assert.ok(out.join('').startsWith('ready'))
      await assert.rejects(sbx.commands.run('echo oops >&2; exit 3'), (e) => e instanceof CommandExitError && e.exitCode === 3 && e.stderr === 'oops\n')
      const env = await sbx.commands.run('echo $GREETING; pwd', { envs: { GREETING: 'hi' } })
      assert.equal(env.stdout, 'hi\n/box\n')
    } finally {
      await sbx.kill()
    }
  },

  // watchDir sees a file made, written and removed (envd's WatchDir,
  // served by polling the directory).
  async watch() {
    const sbx = await Base.create()
    try {
      await sbx.files.makeDir('w')
      const seen = []
      const h = await sbx.files.watchDir('w', (e) => seen.push(`${e.type} ${e.name}`))
      const after = async (from, want) => {
        for (let i = 0; i < 240 && !seen.slice(from).includes(want); i++) await new Promise((r) => setTimeout(r, 250))
        assert.ok(seen.slice(from).includes(want), `${want} not seen: ${JSON.stringify(seen)}`)
      }
      let from = seen.length
      await sbx.files.write('w/a.txt', 'one')
      await after(from, 'create a.txt')
      from = seen.length
      await sbx.files.write('w/a.txt', 'two two')
      await after(from, 'write a.txt')
      from = seen.length
      await sbx.files.remove('w/a.txt')
      await after(from, 'remove a.txt')
      await h.stop()
      assert.ok(!seen.some((e) => !e.endsWith(' a.txt')), 'only a.txt changed: ' + JSON.stringify(seen))
    } finally {
      await sbx.kill()
    }
  },

  // A background command, listed, then killed.
  async background() {
    const sbx = await Base.create()
    try {
      const h = await sbx.commands.run('echo started; sleep 600', { background: true, timeoutMs: 0 })
      assert.ok(h.pid > 0)
      assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid), 'listed while it runs')
      assert.equal(await h.kill(), true)
      await assert.rejects(h.wait(), (e) => e instanceof CommandExitError && e.exitCode === -1)
      assert.ok(!(await sbx.commands.list()).some((p) => p.pid === h.pid), 'gone once killed')
      assert.equal(await sbx.commands.kill(h.pid), false, 'a second kill finds nothing')
    } finally {
      await sbx.kill()
    }
  },

  // setTimeout moves the end; a short one ends the sandbox.
  async timeout() {
    const sbx = await Base.create({ timeoutMs: 120_000 })
    const before = (await sbx.getInfo()).endAt.getTime()
    await sbx.setTimeout(600_000)
    const after = (await sbx.getInfo()).endAt.getTime()
    assert.ok(after > before, `endAt moved on: ${before} -> ${after}`)
    await sbx.setTimeout(1_000)
    // Its end comes without anything else done: asked until it has.
    for (let i = 0; i < 240 && (await sbx.isRunning()); i++) await new Promise((r) => setTimeout(r, 250))
    assert.equal(await sbx.isRunning(), false, 'expired')
    assert.equal(await Base.kill(sbx.sandboxId), false)
  },

  // kill(): true once, false after; the sandbox is then gone.
  async kill() {
    const sbx = await Base.create()
    assert.equal(await sbx.kill(), true)
    assert.equal(await Base.kill(sbx.sandboxId), false)
    assert.equal(await sbx.isRunning(), false)
    await assert.rejects(Base.getInfo(sbx.sandboxId), NotFoundError)
  },

  // A second API key sees nothing of the first's sandbox.
  async tenants() {
    const other = { apiKey: process.env.E2B_OTHER_KEY }
    const sbx = await Base.create()
    try {
      const listed = await Base.list(other).nextItems()
      assert.ok(!listed.some((s) => s.sandboxId === sbx.sandboxId), 'not listed for the other key')
      await assert.rejects(Base.getInfo(sbx.sandboxId, other), NotFoundError)
      assert.equal(await Base.kill(sbx.sandboxId, other), false)
      await assert.rejects(Base.connect(sbx.sandboxId, other))
      assert.equal(await sbx.isRunning(), true, 'still running')
    } finally {
      await sbx.kill()
    }
  },

  // pause() saves the whole VM; connect() resumes it, the kernel's
  // variables intact.
  async pause() {
    const sbx = await Sandbox.create()
    try {
      await sbx.runCode('x = 41')
      assert.equal(await sbx.pause(), true)
      assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
      assert.equal(await Sandbox.pause(sbx.sandboxId), false, 'already paused')
      const back = await Sandbox.connect(sbx.sandboxId)
      assert.equal((await back.getInfo()).state, 'running')
      assert.equal((await back.runCode('x + 1')).text, '42')
    } finally {
      await sbx.kill()
    }
  },

  // Two sandboxes, clones of one snapshot, draw different numbers.
  async random() {
    const [a, b] = await Promise.all([Sandbox.create(), Sandbox.create()])
    try {
      const draw = 'import random, os\n(random.getrandbits(64), os.urandom(8).hex())'
      const [ra, rb] = await Promise.all([a.runCode(draw), b.runCode(draw)])
      assert.ok(ra.text && rb.text, JSON.stringify([ra, rb]))
      assert.notEqual(ra.text, rb.text)
    } finally {
      await Promise.all([a.kill(), b.kill()])
    }
  },

  // python3-data's sandboxes are clones of its session snapshot, whose
  // kernel has NumPy, pandas and Matplotlib imported already; each clone
  // reseeds Python's and NumPy's generators, so two draw different numbers.
  async prestart() {
    const [a, b] = await Promise.all([Sandbox.create(), Sandbox.create()])
    try {
      for (const sbx of [a, b]) {
        const res = await fetch(`${process.env.E2B_API_URL}/v1/sessions/${sbx.sandboxId}`, { headers: { 'X-API-Key': process.env.E2B_API_KEY } })
        const rec = await res.json()
        assert.equal(rec.language, 'python3-data', JSON.stringify(rec))
        assert.equal(rec.start, 'session-snapshot', 'cloned from the session snapshot: ' + JSON.stringify(rec))
      }
      const loaded = await a.runCode('import sys\nsorted(m for m in ("numpy", "pandas", "matplotlib.pyplot") if m in sys.modules)')
      assert.equal(loaded.text, "['matplotlib.pyplot', 'numpy', 'pandas']", 'imported before the first cell: ' + JSON.stringify(loaded))
      const draw = 'import random, os, numpy\n[random.getrandbits(64), os.urandom(8).hex(), int(numpy.random.randint(0, 2**62)), float(numpy.random.rand())]'
      const [ra, rb] = await Promise.all([a.runCode(draw), b.runCode(draw)])
      assert.equal(ra.error, undefined, JSON.stringify(ra.error))
      assert.equal(rb.error, undefined, JSON.stringify(rb.error))
      console.log(`draws: ${ra.text} ${rb.text}`)
      const [xa, xb] = [ra.text, rb.text].map((t) => t.slice(1, -1).split(', '))
      for (const [i, what] of ['random', 'os.urandom', 'numpy.random.randint', 'numpy.random.rand'].entries()) {
        assert.notEqual(xa[i], xb[i], `${what} drew the same in both clones`)
      }
    } finally {
      await Promise.all([a.kill(), b.kill()])
    }
  },

  // A matplotlib figure comes back as a PNG (the python3-data image).
  async plot() {
    const sbx = await Sandbox.create()
    try {
      // The first import of matplotlib and pandas takes a minute under
      // TCG (no KVM): more than the SDK's default 60 s.
      const slow = { timeoutMs: 600_000, requestTimeoutMs: 600_000 }
      const t0 = performance.now()
      const r = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])', slow)
      console.log(`plot cell: ${Math.round(performance.now() - t0)} ms`)
      assert.equal(r.error, undefined, JSON.stringify(r.error))
      const png = r.results.find((x) => x.png)
      assert.ok(png, 'a PNG result')
      assert.equal(Buffer.from(png.png, 'base64').subarray(1, 4).toString(), 'PNG')
      const d0 = performance.now()
      const df = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2]})', slow)
      console.log(`pandas cell: ${Math.round(performance.now() - d0)} ms`)
      assert.match(df.text, /a/)
      assert.match(df.results[0].html, /<table/)
    } finally {
      await sbx.kill()
    }
  },
}

const name = process.argv[2]
if (!checks[name]) {
  console.error(`usage: node sdk.mjs <${Object.keys(checks).join('|')}>`)
  process.exit(2)
}
const t0 = performance.now()
await checks[name]()
console.log(`${name}: ok in ${Math.round(performance.now() - t0)} ms`)
