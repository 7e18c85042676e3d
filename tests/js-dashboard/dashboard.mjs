// Drives the dashboard in headless Chromium like a person would, and prints what it saw as JSON
// for the Rust test to assert on. Input on stdin:
//   {"gateway": "http://127.0.0.1:…", "key": "shoal_…", "tenant_key": "shoal_…",
//    "job": "01J…", "live_spec": {…}, "chromium": "/usr/bin/chromium", "screenshots": "/dir"}
// A step that fails ends the script with its error in `error` (and exit code 1).

import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const input = JSON.parse(readFileSync(0, 'utf8'));
const report = { console_errors: [], steps: [] };
const TIMEOUT = 30_000;

const browser = await chromium.launch({ executablePath: input.chromium, args: ['--no-sandbox'] });
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  // Script errors and refused loads (CSP violations among them) show up here.
  page.on('console', (message) => {
    if (message.type() === 'error') report.console_errors.push(message.text());
  });
  page.on('pageerror', (error) => report.console_errors.push(`page error: ${error.message}`));

  // Signing in: a wrong key is refused on the form, the right one opens the jobs.
  await page.goto(`${input.gateway}/ui`);
  await page.fill('#api-key', 'shoal_not-a-key');
  await page.click('form.sign-in button[type=submit]');
  report.wrong_key_message = await page.locator('form.sign-in .notice-error').innerText();
  // The browser logs the refused request itself; nothing else may be logged.
  report.console_errors = report.console_errors.filter((text) => !text.includes('401'));
  await page.fill('#api-key', input.key);
  await page.click('form.sign-in button[type=submit]');
  const row = page.locator(`tr[data-job-id="${input.job}"]`);
  await row.waitFor();
  report.steps.push('signed in');
  report.listed_state = await row.locator('.badge').first().innerText();
  report.listed_acceptance = await row.locator('.badge').nth(1).innerText();
  await page.screenshot({ path: join(input.screenshots, 'dashboard-jobs.png') });

  // Live: a job submitted now is listed as soon as the gateway's event stream tells of it, long
  // before the list's next poll (10 s after the last).
  const submitted = await fetch(`${input.gateway}/v1/jobs`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${input.key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(input.live_spec),
  });
  const live = (await submitted.json()).id;
  const asked = Date.now();
  await page.locator(`tr[data-job-id="${live}"]`).waitFor();
  report.live_listed_ms = Date.now() - asked;
  report.steps.push('live');

  // The state filter: the job is not among failed ones, and is among succeeded ones.
  await page.selectOption('#state-filter', 'failed');
  await page.waitForURL(/state=failed/);
  await page.locator('#jobs .notice').waitFor();
  report.failed_filter_shows_job = await page.locator(`tr[data-job-id="${input.job}"]`).count() > 0;
  await page.selectOption('#state-filter', 'succeeded');
  await row.waitFor();
  report.steps.push('filtered');

  // Through to the job.
  await row.locator('a.job-link').click();
  await page.waitForURL(new RegExp(`#/jobs/${input.job}$`));
  await page.locator('#job h1').waitFor();
  report.title = await page.locator('#job h1').innerText();
  report.state = await page.locator('#result .badge[data-value]').first().innerText();
  report.acceptance = await page.locator('#job .title .badge').nth(1).innerText();
  report.executions = await page.locator('#executions table.executions tbody tr').evaluateAll((rows) =>
    rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.innerText.trim())));
  report.verdict = await page.locator('#verification .badge').first().innerText();
  report.steps.push('job shown');

  // The output: images loaded through blob URLs, with their real sizes; stats.json shown.
  const images = {};
  for (const name of ['mask.png', 'preview.png']) {
    const image = page.locator(`#output img[data-name="${name}"]`);
    await page.locator(`#output img[data-name="${name}"][data-loaded="true"]`).waitFor();
    images[name] = await image.evaluate((img) => ({
      natural_width: img.naturalWidth,
      natural_height: img.naturalHeight,
      complete: img.complete,
      src_scheme: new URL(img.src).protocol,
      shown_width: img.getBoundingClientRect().width,
    }));
  }
  report.images = images;
  report.output_entries = await page.locator('#output table.listing tbody tr').evaluateAll((rows) =>
    rows.map((row) => row.dataset.name));
  report.stats_preview = await page.locator('#output pre.text-preview[data-name="stats.json"]').innerText();
  await page.locator('#stdout').waitFor();
  await page.waitForFunction(() => !document.querySelector('#stdout')?.innerText.startsWith('Loading'));
  report.stdout = await page.locator('#stdout').innerText();
  report.input_entries = await page.locator('[data-tree="inputs/0"] table.listing tbody tr').evaluateAll((rows) =>
    rows.map((row) => row.dataset.name));
  report.steps.push('files shown');
  // The job down to its output: what the README shows.
  const output = await page.locator('#output').boundingBox();
  const clip = { x: 0, y: 0, width: 1440, height: Math.ceil(output.y + output.height + 20) };
  await page.screenshot({ path: join(input.screenshots, 'dashboard-job.png'), fullPage: true, clip });

  // Workers and shards.
  await page.click('a[data-nav="workers"]');
  await page.locator('table.workers tbody tr').first().waitFor();
  report.workers = await page.locator('table.workers tbody tr').evaluateAll((rows) => rows.map((row) => row.dataset.worker));
  report.shards = await page.locator('table.shards tbody tr').count();
  report.shard_owners = await page.locator('table.shards tbody tr td:nth-child(2)').evaluateAll((cells) =>
    [...new Set(cells.map((cell) => cell.innerText.trim()))]);
  await page.screenshot({ path: join(input.screenshots, 'dashboard-workers.png'), fullPage: true });
  report.steps.push('workers shown');

  // A tenant's key: its own (empty) job list, and no workers.
  const tenant = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const tenantPage = await tenant.newPage();
  tenantPage.setDefaultTimeout(TIMEOUT);
  await tenantPage.goto(`${input.gateway}/ui#/workers`);
  await tenantPage.fill('#api-key', input.tenant_key);
  await tenantPage.click('form.sign-in button[type=submit]');
  report.tenant_workers_message = await tenantPage.locator('#workers .notice').innerText();
  await tenantPage.click('a[data-nav="jobs"]');
  await tenantPage.locator('#jobs .notice, #jobs table').first().waitFor();
  report.tenant_sees_job = await tenantPage.locator(`tr[data-job-id="${input.job}"]`).count() > 0;
  report.steps.push('tenant checked');

  // Forgetting the key goes back to the form.
  await page.click('#sign-out');
  await page.locator('#api-key').waitFor();
  report.key_forgotten = await page.evaluate(() => sessionStorage.getItem('shoal.apiKey') === null);
  report.steps.push('signed out');
} catch (error) {
  report.error = error.stack ?? String(error);
  process.exitCode = 1;
} finally {
  await browser.close();
  console.log(JSON.stringify(report));
}
