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

// `node bench.mjs imports`: import numpy, pandas in a fresh sandbox's
// kernel, then in a second kernel of the same, now warm, VM.
if (process.argv[2] === 'imports') {
  const slow = { timeoutMs: 1_200_000, requestTimeoutMs: 1_200_000 }
  const sbx = await Sandbox.create()
  const t0 = now()
  const a = await sbx.runCode('import numpy, pandas', slow)
  const fresh = now() - t0
  const ctx = await sbx.createCodeContext()
  const t1 = now()
  const b = await sbx.runCode('import numpy, pandas', { ...slow, context: ctx })
  const warm = now() - t1
  await sbx.kill()
  if (a.error || b.error) throw new Error(JSON.stringify([a.error, b.error]))
  console.log(JSON.stringify({ import_numpy_pandas_ms: { fresh_sandbox: Math.round(fresh), warm_vm_new_kernel: Math.round(warm) } }))
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

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}
const summary = {}
for (const [k, xs] of Object.entries(samples)) {
  summary[k] = { median_ms: Math.round(pct(xs, 50)), p90_ms: Math.round(pct(xs, 90)) }
  samples[k] = xs.map((x) => Math.round(x * 10) / 10)
}
console.log(JSON.stringify({ n, summary, samples }))
