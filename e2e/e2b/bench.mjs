// E2B SDK latency against a microbox serve: `node bench.mjs N`, with the
// variables of sdk.mjs. Prints one JSON object: raw samples (ms) of
//   e2b_e2e:   Sandbox.create() + runCode("1+1") + kill(), end to end,
//   create, first_cell, kill: its parts,
//   warm_cell: runCode("1+1") in a live sandbox,
//   native_e2e: our own floor, the native API's POST /v1/sessions +
//               exec of print(1+1) + DELETE, over plain fetch,
// and their medians and p90s. api/e2b_test.go's TestE2BBenchmark runs it.
import { Sandbox } from '@e2b/code-interpreter'

const n = Number(process.argv[2] || 10)
const url = process.env.E2B_API_URL
const key = process.env.E2B_API_KEY
const samples = { e2b_e2e: [], create: [], first_cell: [], kill: [], warm_cell: [], native_e2e: [] }
const now = () => performance.now()

async function native() {
  const h = { 'X-API-Key': key, 'Content-Type': 'application/json' }
  const t0 = now()
  const res = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: h, body: JSON.stringify({ language: 'python3' }) })
  if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`)
  const { id } = await res.json()
  const ex = await (await fetch(`${url}/v1/sessions/${id}/exec`, { method: 'POST', headers: h, body: JSON.stringify({ code: 'print(1+1)' }) })).json()
  if (ex.stdout !== '2\n') throw new Error('exec: ' + JSON.stringify(ex))
  await fetch(`${url}/v1/sessions/${id}`, { method: 'DELETE', headers: h })
  return now() - t0
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}

// `node bench.mjs imports N`: the cell `import numpy, pandas`, N times each,
//   prestarted_first_cell: the first cell of a fresh python3-data sandbox,
//     a clone of its session snapshot (kernel running, imports done);
//   prestarted_create: Sandbox.create() of that sandbox;
//   warm_cell: the same cell again in that sandbox (the floor: a running
//     warm VM whose kernel has the modules);
//   usual_first_cell: the first cell of a sandbox made the usual way (an
//     envVars at create rules the session snapshot out): a kernel started
//     by the cell, which pays the imports;
//   usual_new_kernel_warm_vm: then in a second kernel of that, now warm,
//     VM (what 2026-12-02-tcg-e2b-imports.json called warm_vm_new_kernel).
if (process.argv[2] === 'imports') {
  const runs = Number(process.argv[3] || 3)
  const slow = { timeoutMs: 1_200_000, requestTimeoutMs: 1_200_000 }
  const cell = 'import numpy, pandas'
  const s = { prestarted_create: [], prestarted_first_cell: [], warm_cell: [], usual_first_cell: [], usual_new_kernel_warm_vm: [] }
  const timed = async (xs, fn) => {
    const t0 = now()
    const r = await fn()
    xs.push(now() - t0)
    if (r && r.error) throw new Error(JSON.stringify(r.error))
    return r
  }
  for (let i = 0; i < runs; i++) {
    const sbx = await timed(s.prestarted_create, () => Sandbox.create(slow))
    await timed(s.prestarted_first_cell, () => sbx.runCode(cell, slow))
    await timed(s.warm_cell, () => sbx.runCode(cell, slow))
    await sbx.kill()
    const usual = await Sandbox.create({ ...slow, envs: { MICROBOX_BENCH: '1' } })
    await timed(s.usual_first_cell, () => usual.runCode(cell, slow))
    const ctx = await usual.createCodeContext()
    await timed(s.usual_new_kernel_warm_vm, () => usual.runCode(cell, { ...slow, context: ctx }))
    await usual.kill()
  }
  const summary = {}
  for (const [k, xs] of Object.entries(s)) {
    summary[k] = { median_ms: Math.round(pct(xs, 50)), p90_ms: Math.round(pct(xs, 90)) }
    s[k] = xs.map((x) => Math.round(x * 10) / 10)
  }
  console.log(JSON.stringify({ n: runs, cell, summary, samples: s }))
  process.exit(0)
}

for (let i = 0; i < n; i++) {
  const t0 = now()
  const sbx = await Sandbox.create()
  const t1 = now()
  const r = await sbx.runCode('1+1')
  const t2 = now()
  if (r.text !== '2') throw new Error('runCode: ' + JSON.stringify(r))
  // A cell in the live sandbox, its kernel started.
  const w0 = now()
  const w = await sbx.runCode('1+1')
  samples.warm_cell.push(now() - w0)
  if (w.text !== '2') throw new Error('runCode: ' + JSON.stringify(w))
  const k0 = now()
  await sbx.kill()
  const k1 = now()
  samples.create.push(t1 - t0)
  samples.first_cell.push(t2 - t1)
  samples.kill.push(k1 - k0)
  samples.e2b_e2e.push(t2 - t0 + (k1 - k0))
  samples.native_e2e.push(await native())
}

const summary = {}
for (const [k, xs] of Object.entries(samples)) {
  summary[k] = { median_ms: Math.round(pct(xs, 50)), p90_ms: Math.round(pct(xs, 90)) }
  samples[k] = xs.map((x) => Math.round(x * 10) / 10)
}
console.log(JSON.stringify({ n, summary, samples }))
