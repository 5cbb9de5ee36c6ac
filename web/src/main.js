// microbox's web playground: a language from /languages, an editor, Run
// over /v1/interactive with a terminal the program reads from, and a
// tests mode over /v1/runs. The state (language, mode, code) lives in the
// URL's fragment, so a link shows the same program.
import { EditorView, basicSetup } from 'codemirror';
import { Compartment, EditorState, Prec } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { StreamLanguage } from '@codemirror/language';
import { python } from '@codemirror/lang-python';
import { cpp } from '@codemirror/lang-cpp';
import { javascript } from '@codemirror/lang-javascript';
import { ruby } from '@codemirror/legacy-modes/mode/ruby';
import { shell } from '@codemirror/legacy-modes/mode/shell';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';

import { APIError, apiKey, closeWords, request, setAPIKey, socket } from './api.js';
import { examplesFor } from './examples.js';

const $ = (id) => document.getElementById(id);

// Syntax highlighting by the extension of the language's source file.
const highlighters = {
  '.py': () => python(), '.c': () => cpp(), '.cpp': () => cpp(), '.js': () => javascript(),
  '.rb': () => StreamLanguage.define(ruby), '.sh': () => StreamLanguage.define(shell),
};

const state = {
  languages: [], // {id, name, sourceFile, ext}
  lang: null,
  mode: 'run',
  ws: null, // the running program's socket
  running: false,
  tests: [],
};

// ---- URL state ----

function encodeCode(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function decodeCode(s) {
  try {
    const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
    return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
}

function readURL() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { lang: p.get('lang'), mode: p.get('mode'), code: p.has('code') ? decodeCode(p.get('code')) : null };
}

let urlTimer = 0;
function writeURL() {
  clearTimeout(urlTimer);
  urlTimer = setTimeout(() => {
    if (!state.lang) return;
    const p = new URLSearchParams({ lang: String(state.lang.id), mode: state.mode, code: encodeCode(editor.state.doc.toString()) });
    history.replaceState(null, '', `#${p}`);
  }, 250);
}

// ---- messages ----

function showError(msg) {
  const el = $('error');
  el.textContent = msg;
  el.hidden = !msg;
}

function verdict(text, kind) {
  const el = $(state.mode === 'tests' ? 'tests-verdict' : 'verdict');
  el.textContent = text;
  el.className = `verdict ${kind || ''}`;
}

// measures says how a program ran, in the units people read.
function measures(m) {
  const parts = [];
  if (typeof m.time === 'number') parts.push(`CPU ${m.time.toFixed(3)} s`);
  if (typeof m.wall_time === 'number') parts.push(`wall ${m.wall_time.toFixed(3)} s`);
  if (typeof m.memory === 'number') parts.push(`memory ${(m.memory / 1024).toFixed(1)} MiB`);
  return parts.join(' · ');
}

function statusKind(status) {
  if (!status) return '';
  return status.id === 3 ? 'ok' : 'bad';
}

// ---- editor ----

const language = new Compartment();
const editor = new EditorView({
  parent: $('editor'),
  state: EditorState.create({
    doc: '',
    extensions: [
      Prec.highest(keymap.of([{ key: 'Mod-Enter', run: () => { start(); return true; } }])),
      basicSetup,
      language.of([]),
      EditorView.contentAttributes.of({ 'aria-label': 'Program source code' }),
      EditorView.updateListener.of((u) => { if (u.docChanged) writeURL(); }),
    ],
  }),
});

function setCode(code) {
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: code } });
}

// ---- terminal ----

const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, disableStdin: true, screenReaderMode: true,
  theme: { background: '#101418', foreground: '#e6e6e6' } });
const fit = new FitAddon();
term.loadAddon(fit);
term.open($('terminal'));
fit.fit();
window.addEventListener('resize', () => {
  fit.fit();
  if (state.running && state.ws) state.ws.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
});
term.onData((data) => {
  if (state.running && state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: 'stdin', data }));
  }
});

// A non-terminal stream (the compiler's) needs its own carriage returns.
const crlf = (s) => s.replace(/\r?\n/g, '\r\n');

function b64decode(s) {
  const bin = atob(s);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// ---- languages ----

async function loadLanguages() {
  const list = await request('GET', '/languages');
  // A multi-file program (89) needs a zip: not for the playground.
  const details = await Promise.all(list.filter((l) => l.id !== 89).map((l) => request('GET', `/languages/${l.id}`)));
  state.languages = details.filter((d) => d.source_file).map((d) => {
    const dot = d.source_file.lastIndexOf('.');
    return { id: d.id, name: d.name, sourceFile: d.source_file, ext: dot >= 0 ? d.source_file.slice(dot) : '' };
  });
  const sel = $('language');
  sel.replaceChildren(...state.languages.map((l) => new Option(l.name, String(l.id))));
  sel.disabled = state.languages.length === 0;
  if (!state.languages.length) throw new APIError('This server has no language built yet (make images).', 0);
}

function pickLanguage(id, code) {
  const lang = state.languages.find((l) => String(l.id) === String(id)) || state.languages.find((l) => l.ext === '.py') || state.languages[0];
  state.lang = lang;
  $('language').value = String(lang.id);
  $('source-file').textContent = `(${lang.sourceFile})`;
  const hl = highlighters[lang.ext];
  editor.dispatch({ effects: language.reconfigure(hl ? hl() : []) });
  const exs = examplesFor(lang.ext);
  $('example').replaceChildren(...exs.map((e, i) => new Option(e.title, String(i))));
  if (code === null || code === undefined) loadExample(0);
  else setCode(code);
  writeURL();
}

function loadExample(i) {
  const ex = examplesFor(state.lang.ext)[i];
  setCode(ex.code);
  state.tests = ex.tests.length ? ex.tests.map((t) => ({ ...t })) : [{ stdin: '', expected: '' }];
  renderTests();
}

// ---- modes ----

function setMode(mode) {
  state.mode = mode;
  $('mode-run').setAttribute('aria-pressed', String(mode === 'run'));
  $('mode-tests').setAttribute('aria-pressed', String(mode === 'tests'));
  $('run-view').hidden = mode !== 'run';
  $('tests-view').hidden = mode !== 'tests';
  $('run').textContent = mode === 'run' ? 'Run' : 'Run tests';
  if (mode === 'run') fit.fit();
  writeURL();
}

// ---- run: /v1/interactive ----

function setRunning(on) {
  state.running = on;
  $('run').disabled = on || !state.lang;
  $('stop').disabled = !on;
  $('language').disabled = on;
  term.options.disableStdin = !on;
}

function start() {
  if (state.running || !state.lang) return;
  showError('');
  if (state.mode === 'tests') {
    runTests();
    return;
  }
  term.reset();
  fit.fit();
  setRunning(true);
  verdict('Starting a microVM…');
  const ws = socket('/v1/interactive');
  state.ws = ws;
  let ended = false;
  ws.onopen = () => {
    ws.send(JSON.stringify({ language: state.lang.id, source: editor.state.doc.toString(), tty: true, cols: term.cols, rows: term.rows }));
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    switch (m.type) {
      case 'ready':
        verdict(`Compiling or starting on ${m.accel}…`);
        break;
      case 'compile':
        term.write(`\x1b[2m${crlf(m.base64 ? new TextDecoder().decode(b64decode(m.data)) : m.data)}\x1b[0m`);
        break;
      case 'started':
        verdict('Running: type in the terminal to answer the program.');
        term.focus();
        break;
      case 'stdout':
      case 'stderr':
        term.write(m.base64 ? b64decode(m.data) : m.data);
        break;
      case 'exit': {
        ended = true;
        // The verdict's own message says how it ended (exit code, signal,
        // limit); a compile error's words are the compiler's, above.
        let text = m.status.description;
        if (state.stopping) text = `Stopped${m.message ? ` (${m.message})` : ''}`;
        else if (m.status.id === 6) text += ': the compiler\'s messages are above';
        else if (m.message) text += ` — ${m.message}`;
        verdict(`${text} · ${measures(m)}`, statusKind(m.status));
        break;
      }
      case 'error': {
        const fields = m.fields ? ` (${Object.entries(m.fields).map(([k, v]) => `${k} ${v.join('; ')}`).join('. ')})` : '';
        showError(`${m.message}${fields}`);
        break;
      }
      default:
        break;
    }
  };
  ws.onclose = (ev) => {
    if (!ended) {
      if ($('error').hidden) showError(closeWords(ev));
      verdict('The run did not finish.', 'bad');
    }
    state.ws = null;
    state.stopping = false;
    setRunning(false);
  };
}

function stop() {
  if (!state.running || !state.ws) return;
  state.stopping = true;
  state.ws.send(JSON.stringify({ type: 'signal', signal: 'SIGKILL' }));
  verdict('Stopping…');
}

// ---- tests: /v1/runs ----

function renderTests() {
  const box = $('tests');
  box.replaceChildren();
  state.tests.forEach((t, i) => {
    const row = document.createElement('fieldset');
    row.className = 'test';
    const legend = document.createElement('legend');
    legend.textContent = `Test ${i + 1}`;
    row.append(legend);
    for (const [key, label] of [['stdin', 'Input'], ['expected', 'Expected output']]) {
      const id = `test-${i}-${key}`;
      const l = document.createElement('label');
      l.htmlFor = id;
      l.textContent = label;
      const ta = document.createElement('textarea');
      ta.id = id;
      ta.rows = 2;
      ta.spellcheck = false;
      ta.value = t[key];
      ta.addEventListener('input', () => { t[key] = ta.value; });
      row.append(l, ta);
    }
    const result = document.createElement('div');
    result.className = 'result';
    result.id = `test-${i}-result`;
    result.setAttribute('aria-live', 'polite');
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove test ${i + 1}`);
    remove.addEventListener('click', () => { state.tests.splice(i, 1); renderTests(); });
    row.append(result, remove);
    box.append(row);
  });
}

async function runTests() {
  setRunning(true);
  $('stop').disabled = true; // a run of tests goes to its end
  $('compile-output').hidden = true;
  state.tests.forEach((_, i) => { $(`test-${i}-result`).textContent = ''; });
  verdict(`Running ${state.tests.length} test${state.tests.length === 1 ? '' : 's'} in a microVM…`);
  try {
    const body = {
      language: state.lang.id,
      files: [{ name: state.lang.sourceFile, content: editor.state.doc.toString() }],
      tests: state.tests.map((t) => ({ stdin: t.stdin, expected_output: t.expected })),
    };
    let run = await request('POST', '/v1/runs?wait=true', body);
    // Not done within the server's wait: ask again until it is.
    while (!run.status || run.status.id <= 2) {
      await new Promise((r) => setTimeout(r, 1000));
      run = await request('GET', `/v1/runs/${run.id}`);
    }
    showRun(run);
  } catch (err) {
    showError(err.message);
    verdict('The tests did not run.', 'bad');
  } finally {
    setRunning(false);
  }
}

function showRun(run) {
  if (run.compile_output) {
    $('compile-output').textContent = run.compile_output;
    $('compile-output').hidden = false;
  }
  (run.tests || []).forEach((t, i) => {
    const el = $(`test-${i}-result`);
    if (!el) return;
    if (!t.status) {
      el.textContent = 'Not run';
      el.className = 'result';
      return;
    }
    el.className = `result ${statusKind(t.status)}`;
    const got = t.status.id === 4 ? ` · the program printed: ${JSON.stringify(t.stdout)}` : '';
    el.textContent = `${t.status.description}${t.message ? ` — ${t.message}` : ''} · ${measures(t)}${got}`;
  });
  const s = run.summary || {};
  // Each test's verdict is on its row; the run's message only adds to
  // them when no test ran (a compile error).
  const why = s.ran ? '' : ` — ${run.message || 'no test ran'}`;
  verdict(`${run.status.description}: ${s.passed ?? 0} of ${s.tests ?? 0} passed${why}`, statusKind(run.status));
}

// ---- start-up ----

async function boot() {
  try {
    await loadLanguages();
  } catch (err) {
    if (err.status === 401) {
      $('key-panel').hidden = false;
      $('key-why').textContent = err.message;
      $('api-key').focus();
      return;
    }
    showError(err.message);
    return;
  }
  $('key-panel').hidden = true;
  const from = readURL();
  if (from.mode === 'tests') setMode('tests');
  pickLanguage(from.lang, from.code);
  if (from.lang && String(state.lang.id) !== from.lang) {
    showError(`The link's language (${from.lang}) is not on this server: showing ${state.lang.name} instead.`);
  }
  setRunning(false);
  request('GET', '/about').then((a) => {
    $('server-info').textContent = `${a.name} ${a.version} · ${a.accel === 'tcg' ? 'software CPU (TCG)' : a.accel}`;
  }).catch(() => {});
}

$('key-panel').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setAPIKey($('api-key').value.trim(), $('remember-key').checked);
  showError('');
  boot();
});
$('language').addEventListener('change', () => pickLanguage($('language').value, null));
$('example').addEventListener('change', () => loadExample(Number($('example').value)));
$('mode-run').addEventListener('click', () => setMode('run'));
$('mode-tests').addEventListener('click', () => setMode('tests'));
$('run').addEventListener('click', start);
$('stop').addEventListener('click', stop);
$('add-test').addEventListener('click', () => { state.tests.push({ stdin: '', expected: '' }); renderTests(); });
$('share').addEventListener('click', async () => {
  writeURL();
  await new Promise((r) => setTimeout(r, 300));
  try {
    await navigator.clipboard.writeText(location.href);
    verdict('Link copied: it opens this program in this language.');
  } catch {
    window.prompt('Copy this link:', location.href);
  }
});
document.addEventListener('keydown', (ev) => {
  // Ctrl-Enter anywhere but the terminal, where the program reads keys.
  if ((ev.ctrlKey || ev.metaKey) && ev.key === 'Enter' && !$('terminal').contains(ev.target)) {
    ev.preventDefault();
    start();
  }
});
if (apiKey()) $('api-key').value = apiKey();
renderTests();
boot();
