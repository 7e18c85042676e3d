// Shoal's dashboard: jobs, one job (spec, executions, verdict, logs, files), workers and shards.
// Hash routes: #/jobs[?state=…], #/jobs/{id}, #/workers. Everything shown comes from the JSON
// API, asked again when the gateway's event streams tell of a change to the jobs shown, and
// every few seconds while the tab is visible.

import { ApiError, apiKey, filePath, follow, forgetKey, getBlob, getJson, getText, rememberKey, remove } from './api.js';
import { ago, badge, bytes, cid, count, duration, facts, fill, h, notice, table, time } from './views.js';

const POLL_MS = 2000;
/** How often a job that will not change any more is still looked at (webhook attempts). */
const SETTLED_POLL_MS = 10_000;
/** How often the jobs, or a job that is not fanning out, are read again besides when the
 *  gateway's event stream tells of a change. */
const FOLLOWED_POLL_MS = 10_000;
/** The longest a change told by an event stream waits to be shown, gathered with the next. */
const EVENT_REFRESH_MS = 300;
const STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const IMAGE = /\.(png|jpe?g|gif|webp)$/i;
const TEXT = /\.(json|txt|log|csv|tsv|md)$/i;
/** Largest image shown inline, and largest text file previewed. */
const MAX_IMAGE_BYTES = 32 << 20;
const MAX_TEXT_BYTES = 64 << 10;
/** Log bytes shown; the rest is a download. */
const MAX_LOG_CHARS = 64 << 10;
/** Rows of a directory listing shown. */
const MAX_ROWS = 500;
/** Failures a verifier checks before a failed job is final (as the API's `is_final`). */
const DETERMINISTIC = new Set(['trap', 'fuel_exhausted', 'memory_limit', 'stack_overflow', 'output_limit',
  'invalid_program', 'missing_entrypoint', 'non_zero_exit']);
const ACCEPTANCE = {
  pending: 'awaiting the verifier',
  verified: 'the verifier re-executed it and agreed',
  corrected: 'the verifier replaced a wrong result with its own re-execution',
  unsampled: 'not drawn for re-execution; the signed receipt was checked',
  unverified: 'the spec asked for no verification',
  inconclusive: 'the verifier could not confirm it',
  replicated: 'replicas on other workers agreed (not re-executed by the verifier)',
  gathered: 'gathered from the tasks the verifier decided on',
};

const main = document.getElementById('main');
let view = null;
let signInMessage = null;

/** Runs `step` now and again every `every()` ms while the tab is visible, until stopped. */
function poll(step, every = () => POLL_MS) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) await step();
    if (!stopped) timer = setTimeout(tick, every());
  };
  tick();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

/** `step`, run once at most every EVENT_REFRESH_MS however often asked for, never dropping the last ask. */
function gathered(step) {
  let due = null;
  return () => {
    due ??= setTimeout(() => {
      due = null;
      if (!document.hidden) step();
    }, EVENT_REFRESH_MS);
  };
}

/** Stops every view part in `parts` (polls, event streams) together. */
function together(...parts) {
  return { stop: () => parts.forEach((part) => part.stop()) };
}

/** Shows `error` in `where`; a refused key sends the user back to the sign-in form. */
function failed(where, error) {
  if (error instanceof ApiError && error.status === 401) {
    forgetKey();
    signInMessage = `The key was refused: ${error.message}.`;
    route();
    return;
  }
  fill(where, notice('error', error.message ?? String(error)));
}

function route() {
  view?.stop?.();
  view = null;
  for (const url of blobUrls.splice(0)) URL.revokeObjectURL(url);
  const key = apiKey();
  const session = document.getElementById('session');
  session.hidden = !key;
  document.getElementById('key-label').textContent = key ? `key …${key.slice(-4)}` : '';
  const [path, query] = (location.hash || '#/jobs').slice(1).split('?');
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', path.startsWith(`/${link.dataset.nav}`));
  }
  if (!key) {
    view = signIn();
    return;
  }
  const job = path.match(/^\/jobs\/([0-9A-Za-z]{26})$/);
  if (job) view = jobView(job[1].toUpperCase());
  else if (path === '/workers') view = workersView();
  else view = jobsView(new URLSearchParams(query ?? ''));
}

// ---- sign-in ---------------------------------------------------------------------------------

function signIn() {
  document.title = 'Shoal — sign in';
  const input = h('input', {
    id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'shoal_…', required: true, autofocus: true,
  });
  const message = h('div', {}, signInMessage && notice('error', signInMessage));
  signInMessage = null;
  const form = h('form', {
    class: 'card sign-in',
    onsubmit: async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      try {
        await getJson('/v1/jobs?limit=1', key);
        rememberKey(key);
        route();
      } catch (error) {
        fill(message, notice('error', error.message));
      }
    },
  },
  h('h1', {}, 'Shoal dashboard'),
  h('label', { for: 'api-key' }, 'API key'),
  input,
  h('button', { type: 'submit', class: 'primary' }, 'Open'),
  message,
  h('p', { class: 'hint' }, 'With ', h('code', {}, 'shoal dev'), ' (or ', h('code', {}, 'make demo'),
    ') the key is the ', h('code', {}, 'api_key'), ' in ', h('code', {}, '.shoal/dev.json'), '; ',
    h('code', {}, 'shoal keys create'), ' makes others. It is kept in this tab only and sent to this gateway alone.'));
  fill(main, form);
  input.focus();
  return null;
}

// ---- jobs ------------------------------------------------------------------------------------

function jobsView(params) {
  document.title = 'Shoal — jobs';
  const state = STATES.includes(params.get('state')) ? params.get('state') : '';
  let limit = 50;
  const select = h('select', {
    id: 'state-filter',
    onchange: () => { location.hash = select.value ? `#/jobs?state=${select.value}` : '#/jobs'; },
  }, h('option', { value: '' }, 'all states'), STATES.map((s) => h('option', { value: s, selected: s === state }, s)));
  const updated = h('span', { class: 'muted', id: 'updated' });
  const body = h('div', { id: 'jobs' }, h('p', { class: 'muted' }, 'Loading…'));
  const more = h('button', {
    type: 'button', hidden: true,
    onclick: () => { limit = Math.min(500, limit + 50); refresh(); },
  }, 'Show more');
  fill(main,
    h('div', { class: 'toolbar' }, h('h1', {}, 'Jobs'), h('label', {}, 'State ', select), updated),
    body, h('div', { class: 'more' }, more));

  async function refresh() {
    try {
      const page = await getJson(`/v1/jobs?limit=${limit}${state ? `&state=${state}` : ''}`);
      updated.textContent = `updated ${time(Date.now()).slice(11)} · live`;
      more.hidden = !page.next_cursor || limit >= 500;
      if (page.jobs.length === 0) {
        fill(body, notice('info', state ? `No ${state} jobs.` : 'No jobs yet: submit one with ', !state && h('code', {}, 'shoal run'), '.'));
        return;
      }
      fill(body, table(['Job', 'State', 'Result', 'Program', 'Tenant', 'Created', 'Took'],
        page.jobs.map((job) => ({
          attributes: { dataset: { jobId: job.id } },
          cells: [
            h('a', { href: `#/jobs/${job.id}`, class: 'job-link' }, h('code', {}, job.id)),
            badge(job.state),
            job.acceptance ? badge(job.acceptance) : job.failure_reason ? h('span', { class: 'reason' }, job.failure_reason.replaceAll('_', ' ')) : '',
            cid(job.program),
            job.tenant,
            h('span', { title: ago(job.created_at_ms) }, time(job.created_at_ms)),
            STATES.indexOf(job.state) >= 2 ? duration(job.updated_at_ms - job.created_at_ms) : h('span', { class: 'muted' }, `${ago(job.created_at_ms).replace(' ago', '')} so far`),
          ],
        })), { class: 'jobs' }));
    } catch (error) {
      failed(body, error);
    }
  }
  // The caller's jobs' changes as they happen, and a slower poll in case the stream is away.
  return together(poll(refresh, () => FOLLOWED_POLL_MS), follow('/v1/events', gathered(refresh)));
}

// ---- one job ---------------------------------------------------------------------------------

function isFinal(job) {
  switch (job.state) {
    case 'cancelled': return true;
    case 'succeeded': return job.acceptance !== undefined && job.acceptance !== 'pending';
    case 'failed': return Boolean(job.verification) || job.spec.verification?.mode === 'none'
      || !DETERMINISTIC.has(job.failure?.reason);
    default: return false;
  }
}

function jobView(id) {
  document.title = `Shoal — job ${id}`;
  const details = h('div', { id: 'job' }, h('p', { class: 'muted' }, 'Loading…'));
  const logs = h('section', { class: 'card', id: 'logs', hidden: true });
  const output = h('div', { id: 'output' });
  const inputs = h('div', { id: 'inputs' });
  fill(main, h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← Jobs')), details, output, inputs);
  let seen = null;
  let final = false;
  let shownOutput = null;
  let shownLogs = null;
  let inputsShown = false;
  let fanningOut = false;

  async function refresh() {
    let job;
    try {
      job = await getJson(`/v1/jobs/${id}`);
    } catch (error) {
      failed(details, error);
      return;
    }
    final = isFinal(job);
    fanningOut = Boolean(job.spec.fan_out);
    const text = JSON.stringify(job);
    if (text === seen) return;
    seen = text;
    fill(details, jobDetails(job, refresh));
    // The logs keep their element (and what they loaded) across renders.
    details.querySelector('.logs-slot').replaceWith(logs);
    const logKey = `${job.result?.stdout}/${job.result?.stderr ?? job.failure?.stderr}`;
    if ((job.result || job.failure?.stderr) && logKey !== shownLogs) {
      shownLogs = logKey;
      showLogs(logs, job);
    }
    const out = job.result?.output;
    if (out && out !== shownOutput) {
      shownOutput = out;
      fill(output, browser(job.id, 'output', 'Output', job.acceptance));
    }
    if (!inputsShown && job.spec.inputs.length > 0) {
      inputsShown = true;
      fill(inputs, job.spec.inputs.map((input, index) =>
        browser(job.id, `inputs/${index}`, `Input ${index} · mounted at ${input.path}`)));
    }
  }
  // Its changes as they happen; a fan-out's task counts change without one, so they are asked
  // for every couple of seconds.
  const every = () => (final ? SETTLED_POLL_MS : fanningOut ? POLL_MS : FOLLOWED_POLL_MS);
  return together(poll(refresh, every), follow(`/v1/jobs/${encodeURIComponent(id)}/events`, gathered(refresh)));
}

function jobDetails(job, refresh) {
  const spec = job.spec;
  const result = job.result;
  const cancel = !['succeeded', 'failed', 'cancelled'].includes(job.state) && h('button', {
    type: 'button', class: 'danger',
    onclick: async () => {
      if (!confirm(`Cancel job ${job.id}?`)) return;
      try {
        await remove(`/v1/jobs/${job.id}`);
      } catch (error) {
        alert(error.message);
      }
      refresh();
    },
  }, 'Cancel job');
  const title = h('div', { class: 'title' },
    h('h1', {}, 'Job ', h('code', {}, job.id)),
    badge(job.state),
    job.acceptance && badge(job.acceptance),
    cancel);
  const subtitle = h('p', { class: 'muted subtitle' },
    `tenant ${job.tenant} · shard ${job.shard} · created ${time(job.created_at_ms)} · `,
    job.state === 'queued' || job.state === 'running'
      ? `${job.state} for ${duration(Date.now() - job.created_at_ms)}`
      : `ended after ${duration(job.updated_at_ms - job.created_at_ms)}`);

  const specCard = h('section', { class: 'card', id: 'spec' }, h('h2', {}, 'Spec'), facts([
    ['Program', cid(spec.program)],
    ['Entrypoint', spec.entrypoint !== '_start' ? h('code', {}, spec.entrypoint) : null],
    ['Arguments', spec.args.length ? h('code', {}, spec.args.join(' ')) : null],
    ['Environment', Object.keys(spec.env).length
      ? h('ul', { class: 'plain' }, Object.entries(spec.env).map(([k, v]) => h('li', {}, h('code', {}, `${k}=${v}`))))
      : null],
    ['Inputs', spec.inputs.length
      ? h('ul', { class: 'plain' }, spec.inputs.map((input) => h('li', {}, cid(input.cid), ' → ', h('code', {}, input.path))))
      : 'none'],
    ['Limits', `${count(spec.limits.fuel)} fuel · ${bytes(spec.limits.memory_bytes)} memory · ${duration(spec.limits.wall_time_ms)} wall time`],
    ['Verification', policy(spec.verification)],
    ['Determinism', spec.determinism === 'nondeterministic' ? 'nondeterministic: the host\'s clocks and randomness' : null],
    ['Writes', spec.writes?.length ? h('code', {}, spec.writes.join(' ')) : null],
    ['Retry', `${spec.retry.max_attempts} attempts within ${duration(spec.retry.total_timeout_ms)}`],
    ['Fan-out', spec.fan_out ? `over ${spec.fan_out.over ?? 'input'} ${spec.fan_out.input ?? ''}${spec.fan_out.glob ? ` matching ${spec.fan_out.glob}` : ''}, batches of ${spec.fan_out.batch ?? 1}` : null],
    ['Notify', spec.notify ? `${spec.notify.url} on ${spec.notify.events.join(', ')}` : null],
  ]));

  const resultCard = h('section', { class: 'card', id: 'result' }, h('h2', {}, 'Result'), facts([
    ['State', badge(job.state)],
    ['Acceptance', job.acceptance ? [badge(job.acceptance), ' ', h('span', { class: 'muted' }, ACCEPTANCE[job.acceptance] ?? '')] : null],
    ['Failure', job.failure ? [h('span', { class: 'reason' }, job.failure.reason.replaceAll('_', ' ')), ': ', job.failure.message] : null],
    ['Exit code', result ? String(result.exit_code) : null],
    ['Output', result ? cid(result.output) : null],
    ['Fuel used', result ? count(result.fuel_consumed) : null],
    ['Fetch / run', result ? `${duration(result.fetch_ms)} / ${duration(result.run_ms)}` : null],
    ['Inputs cached', result ? `${result.inputs_cached} of ${spec.inputs.length}` : null],
  ]));

  return [title, subtitle, h('div', { class: 'columns' }, specCard, resultCard),
    executions(job), h('div', { class: 'columns' }, verification(job), h('div', { class: 'logs-slot' })),
    tasks(job), webhooks(job)];
}

function policy(p) {
  if (!p) return '';
  const mode = p.mode === 'replicated'
    ? `replicated on ${p.replicas} workers${p.quorum ? `, a quorum of ${p.quorum}` : ''}` : p.mode;
  const compare = p.compare;
  if (!compare || compare.kind === 'exact') return mode;
  if (compare.kind === 'tolerance') {
    return `${mode}, compared within tolerance: ${compare.fields.map(fieldName).join(', ')}`;
  }
  return `${mode}, compared by the comparator ${compare.program}`;
}

function fieldName(field) {
  const name = field.json ? `${field.file}#${field.json}` : `${field.file}[${field.column}]`;
  const within = [field.absolute !== undefined ? `±${field.absolute}` : null,
    field.relative !== undefined ? `±${field.relative * 100}%` : null].filter(Boolean).join(' or ');
  return within ? `${name} ${within}` : name;
}

function comparison(c) {
  const verdict = badge(c.agree ? 'agree' : 'disagree', c.agree ? 'succeeded' : 'failed');
  const against = h('code', {}, c.against);
  if (c.kind === 'exact') return [verdict, ' exact, with ', against, c.differs?.length ? ` (${c.differs.join(', ')} differ)` : ''];
  if (c.kind === 'tolerance') {
    return [verdict, ' tolerance, with ', against, h('ul', { class: 'plain' }, c.checks.map((check) => h('li', {},
      h('code', {}, check.field), ' ', check.problem ?? `${check.reported} vs ${check.other}${check.within ? '' : ' (out of tolerance)'}`)))];
  }
  return [verdict, ' comparator, with ', against, `: exit ${c.exit_code} `, h('code', {}, c.said), ' ', cid(c.output)];
}

function executions(job) {
  const rows = job.executions.map((execution, index) => {
    const outcome = execution.outcome;
    let text = h('span', { class: 'muted' }, 'running');
    if (outcome?.status === 'completed') text = [badge('completed', 'succeeded'), ` exit ${outcome.exit_code}`];
    else if (outcome?.status === 'failed') text = [badge('failed'), ' ', h('span', { class: 'reason' }, outcome.reason.replaceAll('_', ' ')), `: ${outcome.message}`];
    else if (execution.finished_at_ms) text = h('span', { class: 'muted' }, 'abandoned');
    return [
      String(index + 1),
      h('code', { class: 'worker' }, execution.worker),
      time(execution.started_at_ms),
      execution.finished_at_ms ? duration(execution.finished_at_ms - execution.started_at_ms) : '',
      text,
      outcome?.fuel_consumed !== undefined ? count(outcome.fuel_consumed) : '',
      execution.receipt ? h('span', { title: 'settled with a receipt signed by the worker\'s key' }, 'signed') : '',
    ];
  });
  return h('section', { class: 'card', id: 'executions' }, h('h2', {}, `Executions (${rows.length})`),
    rows.length ? table(['#', 'Worker', 'Started', 'Took', 'Outcome', 'Fuel', 'Receipt'], rows, { class: 'executions' })
      : h('p', { class: 'muted' }, 'Not started yet.'));
}

function verification(job) {
  const v = job.verification;
  const card = h('section', { class: 'card', id: 'verification' }, h('h2', {}, 'Verification'));
  if (!v) {
    const waiting = job.state === 'succeeded' || (job.state === 'failed' && !isFinal(job));
    card.append(h('p', { class: 'muted' }, waiting ? 'Awaiting the verifier.' : `No verdict (policy: ${policy(job.spec.verification)}).`));
    return card;
  }
  const o = v.outcome;
  const detail = o.worker ? `worker ${o.worker}${o.reason ? `: ${o.reason}` : ''}${o.failure ? `: ${o.failure.message}` : ''}` : null;
  card.append(facts([
    ['Verdict', badge(o.verdict, verdictKind(o.verdict))],
    ['Verifier', h('code', {}, v.verifier)],
    ['At', time(v.at_ms)],
    ['About', detail],
    ['Replicas', v.replicas?.length ? v.replicas.map((r) => h('a', { href: `#/jobs/${r}` }, h('code', {}, r), ' ')) : null],
    ['Agreeing workers', o.workers?.length ? o.workers.join(', ') : null],
    ['Corrected output', v.corrected ? cid(v.corrected.output) : null],
    ['Failure found', v.failed ? `${v.failed.reason}: ${v.failed.message}` : null],
    ['Compared', v.compared?.length ? h('ul', { class: 'plain' }, v.compared.map((c) => h('li', {}, comparison(c)))) : null],
  ]));
  return card;
}

function verdictKind(verdict) {
  if (verdict === 'agreed' || verdict === 'vouched' || verdict === 'replicated') return 'succeeded';
  if (verdict === 'inconclusive') return 'pending';
  return 'failed';
}

function tasks(job) {
  const t = job.tasks;
  if (!t) return null;
  return h('section', { class: 'card', id: 'tasks' }, h('h2', {}, 'Fan-out'), facts([
    ['Files', `${count(t.total)}: ${count(t.succeeded)} succeeded, ${count(t.failed)} failed, ${count(t.total - t.succeeded - t.failed)} pending`],
    ['Tasks', `${count(t.tasks_finished)} of ${count(t.tasks)} finished`],
    ['Gathered output', t.output ? cid(t.output) : null],
  ]), t.failures?.length ? table(['File', 'Task', 'Reason', 'Message'], t.failures.map((f) =>
    [h('code', {}, f.name), h('a', { href: `#/jobs/${f.job}` }, h('code', {}, f.job)), f.reason.replaceAll('_', ' '), f.message])) : null);
}

function webhooks(job) {
  if (!job.webhook_attempts?.length) return null;
  return h('section', { class: 'card', id: 'webhooks' }, h('h2', {}, 'Webhook deliveries'),
    table(['Event', 'Attempt', 'At', 'Answer', 'Outcome'], job.webhook_attempts.map((a) => [
      h('code', {}, a.event), String(a.attempt), time(a.at_ms), a.status ? `HTTP ${a.status}` : (a.error ?? ''),
      badge(a.outcome, a.outcome === 'delivered' ? 'succeeded' : a.outcome === 'retrying' ? 'pending' : 'failed'),
    ])));
}

async function showLogs(section, job) {
  section.hidden = false;
  const streams = [];
  if (job.result) streams.push(['stdout', 'Standard output']);
  if (job.result || job.failure?.stderr) streams.push(['stderr', 'Standard error']);
  const blocks = streams.map(([tree, label]) => {
    const pre = h('pre', { class: 'log', id: tree }, h('span', { class: 'muted' }, 'Loading…'));
    getText(filePath(job.id, tree)).then((text) => {
      if (text.length === 0) fill(pre, h('span', { class: 'muted' }, '(empty)'));
      else fill(pre, text.length > MAX_LOG_CHARS ? `${text.slice(0, MAX_LOG_CHARS)}\n… (${count(text.length - MAX_LOG_CHARS)} more characters)` : text);
    }, (error) => failed(pre, error));
    return h('div', { class: 'log-block' }, h('h3', {}, label), pre);
  });
  fill(section, h('h2', {}, 'Logs'), blocks);
}

// ---- files -----------------------------------------------------------------------------------

const blobUrls = [];

/** A browser over one of a job's trees (`output`, `inputs/0`): listing, images, text previews. */
function browser(jobId, tree, heading, acceptance) {
  const section = h('section', { class: 'card browser', dataset: { tree } });
  open('');
  return section;

  async function open(path) {
    fill(section, header(path), h('p', { class: 'muted' }, 'Loading…'));
    let listing;
    try {
      const response = await fetch(filePath(jobId, tree, path), {
        headers: { Authorization: `Bearer ${apiKey()}` },
      });
      if (!response.ok) {
        const error = (await response.json().catch(() => ({}))).error ?? {};
        throw new ApiError(response.status, error.code, error.message ?? `HTTP ${response.status}`);
      }
      // A directory answers its listing; a file (an input that is one file) its bytes.
      const isJson = (response.headers.get('content-type') ?? '').startsWith('application/json');
      const body = isJson ? await response.json() : null;
      if (body && body.tree === tree && Array.isArray(body.entries)) listing = body;
      else listing = { entries: [{ name: tree, kind: 'file', size: Number(response.headers.get('content-length')), cid: response.headers.get('etag')?.replaceAll('"', '') }], single: true };
    } catch (error) {
      failed(section, error);
      section.prepend(header(path));
      return;
    }
    const entries = listing.entries;
    const files = entries.filter((e) => e.kind === 'file');
    // A preview (cloud-detect's scene | mask) first: it tells the most at a glance.
    const images = files.filter((e) => IMAGE.test(e.name) && e.size <= MAX_IMAGE_BYTES).slice(0, 24)
      .sort((a, b) => Number(/preview/i.test(b.name)) - Number(/preview/i.test(a.name)));
    const texts = files.filter((e) => TEXT.test(e.name) && e.size <= MAX_TEXT_BYTES).slice(0, 8);
    const rows = entries.slice(0, MAX_ROWS).map((entry) => {
      const full = [path, entry.name].filter(Boolean).join('/');
      const name = entry.kind === 'directory'
        ? h('a', { href: '#', class: 'dir', onclick: (e) => { e.preventDefault(); open(full); } }, `${entry.name}/`)
        : h('span', { class: 'file' }, entry.name);
      const download = entry.kind === 'file' && h('button', {
        type: 'button', class: 'link',
        onclick: () => downloadFile(jobId, tree, listing.single ? '' : full, entry.name),
      }, 'download');
      return { attributes: { dataset: { name: entry.name } }, cells: [name, entry.kind, entry.kind === 'file' ? bytes(entry.size) : '', cid(entry.cid), download] };
    });
    fill(section,
      header(path, listing.cid),
      images.length ? h('div', { class: 'gallery' }, images.map((e) => figure(jobId, tree, [path, e.name].filter(Boolean).join('/'), e))) : null,
      texts.length ? h('div', { class: 'previews' }, texts.map((e) => preview(jobId, tree, [path, e.name].filter(Boolean).join('/'), e))) : null,
      entries.length ? table(['Name', 'Kind', 'Size', 'CID', ''], rows, { class: 'listing' }) : h('p', { class: 'muted' }, 'Empty directory.'),
      entries.length > MAX_ROWS ? h('p', { class: 'muted' }, `… and ${count(entries.length - MAX_ROWS)} more entries (shoal get fetches them all).`) : null);
  }

  function header(path, dirCid) {
    const parts = path.split('/').filter(Boolean);
    const crumbs = [h('a', { href: '#', onclick: (e) => { e.preventDefault(); open(''); } }, heading)];
    parts.forEach((part, i) => {
      crumbs.push(' / ', h('a', { href: '#', onclick: (e) => { e.preventDefault(); open(parts.slice(0, i + 1).join('/')); } }, part));
    });
    return h('div', { class: 'browser-head' }, h('h2', {}, crumbs),
      acceptance && tree === 'output' ? badge(acceptance) : null,
      dirCid ? cid(dirCid) : null);
  }
}

function figure(jobId, tree, path, entry) {
  const img = h('img', { alt: entry.name, dataset: { name: entry.name } });
  const caption = h('figcaption', {}, h('strong', {}, entry.name), ' ', h('span', { class: 'muted' }, bytes(entry.size)));
  img.addEventListener('load', () => {
    img.dataset.loaded = 'true';
    caption.append(h('span', { class: 'muted' }, ` · ${img.naturalWidth} × ${img.naturalHeight} px`));
  });
  getBlob(filePath(jobId, tree, path)).then((blob) => {
    const url = URL.createObjectURL(blob);
    blobUrls.push(url);
    img.src = url;
  }, (error) => { img.alt = `${entry.name}: ${error.message}`; img.dataset.error = error.code; });
  return h('figure', {}, img, caption);
}

function preview(jobId, tree, path, entry) {
  const pre = h('pre', { class: 'text-preview', dataset: { name: entry.name } }, 'Loading…');
  getText(filePath(jobId, tree, path)).then((text) => {
    let shown = text;
    if (/\.json$/i.test(entry.name)) {
      // Indented only when that loses nothing: JavaScript numbers cannot hold every integer a
      // program writes (a 64-bit seed), and a file already laid out is shown as written.
      try {
        const parsed = JSON.parse(text);
        if (JSON.stringify(parsed) === text.trim()) shown = JSON.stringify(parsed, null, 2);
      } catch { /* shown as it is */ }
    }
    fill(pre, shown);
  }, (error) => fill(pre, error.message));
  return h('div', { class: 'text-file' }, h('h3', {}, entry.name), pre);
}

async function downloadFile(jobId, tree, path, name) {
  try {
    const blob = await getBlob(filePath(jobId, tree, path));
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    alert(`${name}: ${error.message}`);
  }
}

// ---- workers and shards ----------------------------------------------------------------------

function workersView() {
  document.title = 'Shoal — workers';
  const updated = h('span', { class: 'muted', id: 'updated' });
  const body = h('div', { id: 'workers' }, h('p', { class: 'muted' }, 'Loading…'));
  fill(main, h('div', { class: 'toolbar' }, h('h1', {}, 'Workers and shards'), updated), body);
  let forbidden = false;

  async function refresh() {
    if (forbidden) return;
    let answer;
    try {
      answer = await getJson('/v1/workers');
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) {
        forbidden = true;
        fill(body, notice('info', 'Workers and shards are shown to operators only: this key belongs to a tenant. ',
          'Use an operator\'s key (', h('code', {}, 'shoal keys create --role operator'), ') to see them.'));
        return;
      }
      failed(body, error);
      return;
    }
    updated.textContent = `updated ${time(Date.now()).slice(11)} · refreshed every ${POLL_MS / 1000} s`;
    const shards = answer.shards ?? [];
    const owned = new Map();
    for (const shard of shards) {
      if (shard.owner) owned.set(shard.owner, [...(owned.get(shard.owner) ?? []), shard.shard]);
    }
    const extra = new Map();
    for (const [shard, readers] of Object.entries(answer.hot_shards ?? {})) {
      for (const reader of readers) extra.set(reader, [...(extra.get(reader) ?? []), Number(shard)]);
    }
    const unread = shards.reduce((sum, s) => sum + s.unread, 0);
    const pending = shards.reduce((sum, s) => sum + s.pending, 0);
    const hot = Object.keys(answer.hot_shards ?? {}).length;
    const workers = answer.workers.length
      ? table(['Worker', 'Slots', 'Cache', 'Labels', 'Owns shards', 'Hot shards read', 'Started', 'Last heard'],
        answer.workers.map((w) => ({
          attributes: { dataset: { worker: w.id } },
          cells: [
            h('code', { class: 'worker' }, w.id), String(w.capacity), bytes(w.cache_bytes),
            Object.entries(w.labels ?? {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`)),
            shardList(owned.get(w.id)), shardList(extra.get(w.id)),
            time(w.started_at_ms), ago(w.last_seen_ms),
          ],
        })), { class: 'workers' })
      : notice('warn', `No worker heard from within ${duration(answer.live_within_ms)}.`);
    const maxBacklog = Math.max(1, ...shards.map((s) => s.unread + s.pending));
    const shardTable = table(['Shard', 'Owner', 'Unread', 'Running', 'Backlog', 'Extra readers'],
      shards.map((s) => ({
        attributes: { class: s.unread + s.pending === 0 ? 'idle' : '', dataset: { shard: s.shard } },
        cells: [
          String(s.shard), s.owner ? h('code', { class: 'worker' }, s.owner) : h('span', { class: 'reason' }, 'no live worker'),
          count(s.unread), count(s.pending),
          h('div', { class: 'bar', title: `${s.unread + s.pending} outstanding` },
            h('span', { class: 'bar-pending', dataset: { w: s.pending } }),
            h('span', { class: 'bar-unread', dataset: { w: s.unread } })),
          s.extra_readers.length ? [badge('hot', 'running'), ' ', s.extra_readers.join(', ')] : '',
        ],
      })), { class: 'shards' });
    // Widths are set through the CSSOM: the policy allows no inline style attributes.
    for (const span of shardTable.querySelectorAll('.bar span')) span.style.width = `${(100 * Number(span.dataset.w)) / maxBacklog}%`;
    fill(body,
      h('div', { class: 'stats' },
        stat('Live workers', answer.workers.length, `heard from within ${duration(answer.live_within_ms)}`),
        stat('Slots', answer.workers.reduce((sum, w) => sum + w.capacity, 0), 'jobs at once'),
        stat('Unread', unread, 'entries waiting on shard streams'),
        stat('Running', pending, 'entries read, not yet acknowledged'),
        stat('Hot shards', hot, 'with extra readers')),
      h('section', { class: 'card' }, h('h2', {}, 'Workers'), workers),
      h('section', { class: 'card' }, h('h2', {}, `Shards (${shards.length})`), shardTable));
  }
  return poll(refresh);
}

function shardList(shards) {
  if (!shards?.length) return '';
  return h('span', { class: 'shard-list', title: shards.join(', ') }, shards.length > 12 ? `${shards.slice(0, 12).join(', ')} … (${shards.length})` : shards.join(', '));
}

function stat(label, value, hint) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-value' }, count(value)), h('div', { class: 'stat-label' }, label), h('div', { class: 'muted' }, hint));
}

// ---- start -----------------------------------------------------------------------------------

document.getElementById('sign-out').addEventListener('click', () => {
  forgetKey();
  route();
});
window.addEventListener('hashchange', route);
route();
