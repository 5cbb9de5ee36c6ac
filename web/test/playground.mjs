// The playground end to end in headless Chromium (Debian's, driven by
// playwright-core; no browser is downloaded), against a live microbox
// that requires an API key. Usage:
//   node test/playground.mjs SERVER_URL API_KEY
// It does what a student would: gives the key, picks Python, types a
// program that asks for input, runs it, answers in the terminal, sees the
// answer; a C compile error shows the compiler's message; Stop ends a
// program that would not; the tests mode judges each test; the URL keeps
// the program; a phone-sized screen works. A screenshot of each state goes
// to $MICROBOX_ARTIFACTS (default test/artifacts/playground).
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const [server, key] = process.argv.slice(2);
if (!server || !key) {
  console.error('usage: node test/playground.mjs SERVER_URL API_KEY');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const shots = process.env.MICROBOX_ARTIFACTS || path.join(here, 'artifacts', 'playground');
await mkdir(shots, { recursive: true });

// Steps wait for what a person would see; a VM under a software CPU on a
// loaded machine may take minutes, so the bound is only a backstop.
const slow = { timeout: 5 * 60 * 1000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

let step = 0;
async function shot(page, name) {
  step++;
  const file = path.join(shots, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}

// terminalText is what the terminal shows, as its rows are drawn.
const terminalText = (page) => page.locator('#terminal .xterm-rows').innerText();

async function waitTerminal(page, re) {
  await page.waitForFunction((src) => new RegExp(src).test(document.querySelector('#terminal .xterm-rows')?.innerText || ''), re.source, slow);
}

// typeProgram types into the editor as a person does (the editor closes
// brackets and quotes as they are typed, and steps over them after).
async function typeProgram(page, lines) {
  await page.getByLabel('Program source code').click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  for (const [i, line] of lines.entries()) {
    if (i > 0) {
      await page.keyboard.press('Enter');
      await page.keyboard.press('Shift+Home'); // drop the editor's indentation
      await page.keyboard.press('Delete');
    }
    await page.keyboard.type(line);
  }
}

const errors = [];
async function newPage(context) {
  const page = await context.newPage();
  page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    // A refused request is logged by the browser; the page says why in
    // words, which the steps check.
    if (msg.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text())) {
      errors.push(`console: ${msg.text()}`);
    }
  });
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.origin !== new URL(server).origin && u.protocol !== 'data:') errors.push(`request to another origin: ${req.url()}`);
  });
  return page;
}

try {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await newPage(desktop);
  await page.goto(server);

  // The server needs a key: the page asks for one, and says so in words
  // when it is wrong.
  const keyField = page.getByLabel('API key');
  await keyField.waitFor(slow);
  await keyField.fill('not-the-key-0123456789');
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.getByText('did not accept this API key').waitFor(slow);
  await shot(page, 'key-rejected');
  await keyField.fill(key);
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.getByLabel('Language').waitFor(slow);
  await page.waitForFunction(() => document.querySelectorAll('#language option').length > 1, null, slow);
  const langs = await page.locator('#language option').allTextContents();
  assert.ok(langs.some((l) => /^Python \(\d+\.\d+/.test(l)), `languages with versions: ${langs}`);
  assert.ok(await page.getByRole('link', { name: /OpenAPI/ }).isVisible(), 'a link to the OpenAPI document');
  console.log(`languages: ${JSON.stringify(langs)}`);

  // Python, a program that asks, typed; Run; the prompt; an answer typed
  // into the terminal; the program's reply and the verdict.
  await page.getByLabel('Language').selectOption({ label: langs.find((l) => l.startsWith('Python')) });
  await typeProgram(page, ['name = input("Your name? ")', 'print("Hello, " + name + "!")']);
  assert.equal(await page.evaluate(() => document.querySelector('.cm-content').innerText.trim()), 'name = input("Your name? ")\nprint("Hello, " + name + "!")');
  await shot(page, 'python-typed');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await waitTerminal(page, /Your name\? /);
  await page.getByRole('status').filter({ hasText: 'Running' }).waitFor(slow);
  await shot(page, 'python-asks');
  await page.locator('#terminal').click();
  await page.keyboard.type('Ada');
  await page.keyboard.press('Enter');
  await waitTerminal(page, /Hello, Ada!/);
  await page.locator('#verdict.ok').filter({ hasText: 'Accepted' }).waitFor(slow);
  const v = await page.locator('#verdict').innerText();
  assert.match(v, /CPU \d+\.\d+ s · wall \d+\.\d+ s · memory \d+\.\d MiB/, v);
  console.log(`python run: terminal ${JSON.stringify(await terminalText(page))}, verdict ${JSON.stringify(v)}`);
  await shot(page, 'python-answered');

  // The URL keeps the language and the code: a reload shows them.
  const link = page.url();
  assert.match(link, /#lang=\d+&mode=run&code=/);
  await page.reload();
  await page.waitForFunction(() => document.querySelector('.cm-content')?.innerText.includes('Your name?'), null, slow);
  assert.equal(await page.getByLabel('Language').inputValue(), new URLSearchParams(new URL(link).hash.slice(1)).get('lang'));

  // C with a compile error: the compiler's message, Compilation Error.
  await page.getByLabel('Language').selectOption({ label: langs.find((l) => /^C \(/.test(l)) });
  await page.getByLabel('Example').selectOption({ label: 'A compile error' });
  await page.keyboard.press('Control+Enter');
  await page.locator('#verdict.bad').filter({ hasText: 'Compilation Error' }).waitFor(slow);
  await waitTerminal(page, /error: .answer. undeclared/);
  console.log(`c compile error: ${JSON.stringify(await terminalText(page))}`);
  await shot(page, 'c-compile-error');

  // Stop ends a program that would run on.
  await page.getByLabel('Language').selectOption({ label: langs.find((l) => l.startsWith('Python')) });
  await typeProgram(page, ['import time', 'print("working", flush=True)', 'time.sleep(3600)']);
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await waitTerminal(page, /working/);
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.locator('#verdict.bad').filter({ hasText: 'Stopped' }).waitFor(slow);
  console.log(`stopped: ${JSON.stringify(await page.locator('#verdict').innerText())}`);
  await shot(page, 'python-stopped');

  // The tests mode: an example's tests, one changed to fail; a verdict
  // for each.
  await page.getByRole('button', { name: 'Tests', exact: true }).click();
  await page.getByLabel('Example').selectOption({ label: 'Sum two numbers' });
  await page.getByLabel('Expected output').nth(1).fill('7\n');
  await page.getByRole('button', { name: 'Run tests' }).click();
  await page.locator('#tests-verdict.bad').filter({ hasText: 'Wrong Answer: 1 of 2 passed' }).waitFor(slow);
  assert.match(await page.locator('#test-0-result').innerText(), /^Accepted/);
  assert.match(await page.locator('#test-1-result').innerText(), /^Wrong Answer.*printed: "6\\n"/);
  console.log(`tests: ${JSON.stringify(await page.locator('#tests').innerText())}`);
  await shot(page, 'tests');

  // An API error in words: a test the server refuses.
  await page.getByRole('button', { name: 'Remove test 2' }).click();
  await page.getByRole('button', { name: 'Remove test 1' }).click();
  await page.getByRole('button', { name: 'Run tests' }).click();
  await page.getByRole('alert').filter({ hasText: 'The server refused the request: tests' }).waitFor(slow);
  console.log(`refused: ${JSON.stringify(await page.getByRole('alert').innerText())}`);
  await shot(page, 'api-error');

  // A phone: 360 px wide, nothing wider than the screen, and a run.
  const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
  const small = await newPage(phone);
  await small.goto(server);
  await small.getByLabel('API key').fill(key);
  await small.getByRole('button', { name: 'Use key' }).click();
  await small.waitForFunction(() => document.querySelectorAll('#language option').length > 1, null, slow);
  await small.getByLabel('Language').selectOption({ label: langs.find((l) => l.startsWith('Python')) });
  await small.getByLabel('Example').selectOption({ label: 'FizzBuzz' });
  await small.getByRole('button', { name: 'Run', exact: true }).tap();
  await small.locator('#verdict.ok').filter({ hasText: 'Accepted' }).waitFor(slow);
  assert.match(await terminalText(small), /FizzBuzz/);
  const width = await small.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `the page is ${width} px wide on a 360 px screen`);
  await shot(small, 'phone');

  // Every control has a name a screen reader can say.
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, select, input, textarea, [role=region]')]
    .filter((el) => !el.closest('[hidden]') && !el.closest('.xterm-helpers') && !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, [], 'controls without a name');
  assert.deepEqual(errors, [], 'errors in the page');
  console.log('playground: all checks passed');
} catch (err) {
  console.error(err);
  console.error(errors.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
