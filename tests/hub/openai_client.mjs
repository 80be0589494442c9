// A client nobody here wrote: the official `openai` npm package does one
// non-streaming and one streaming chat completion against BASEURL (an
// OpenAI-compatible /v1 base, e.g. http://127.0.0.1:9000/v1).
//
// usage: NODE_PATH=$(scripts/npm-openai.sh) node tests/hub/openai_client.mjs BASEURL APIKEY
// Exit status: 0 both calls produced text; 1 a call failed or produced no
// text; 2 usage or `openai` not found; 3 overall timeout (60 s).
// Environment: OPENAI_MODEL (default "ferry"), OPENAI_MAX_TOKENS (default 16).
import { createRequire } from 'node:module';
import path from 'node:path';

const [base, apiKey] = process.argv.slice(2);
if (!base || apiKey === undefined || base === '--help' || base === '-h') {
  console.error('usage: NODE_PATH=<node_modules with openai> node openai_client.mjs BASEURL APIKEY');
  process.exit(2);
}

// ES modules ignore NODE_PATH, so look the package up there ourselves.
const require = createRequire(import.meta.url);
let mod = null;
for (const dir of (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean)) {
  try { mod = require(path.join(dir, 'openai')); break; } catch { /* next */ }
}
if (!mod) {
  console.error('openai_client: the `openai` package is not in NODE_PATH (run scripts/npm-openai.sh)');
  process.exit(2);
}
const OpenAI = mod.OpenAI || mod.default || mod;

const killer = setTimeout(() => { console.error('openai_client: timed out after 60 s'); process.exit(3); }, 60000);

const client = new OpenAI({ baseURL: base, apiKey: apiKey || 'none', timeout: 30000, maxRetries: 0 });
const request = {
  model: process.env.OPENAI_MODEL || 'ferry',
  messages: [{ role: 'user', content: 'Tell me a joke' }],
  max_tokens: Number(process.env.OPENAI_MAX_TOKENS || 16),
  ignore_eos: true,   // llama.cpp extension: a fixed length, never an empty reply
};

let failed = false;
try {
  const r = await client.chat.completions.create(request);
  const text = r.choices?.[0]?.message?.content;
  if (typeof text !== 'string' || text.length === 0) {
    console.error('openai_client: non-streaming reply has no text:', JSON.stringify(r));
    failed = true;
  } else {
    console.log(`non-streaming ok: ${text.length} chars, finish_reason=${r.choices[0].finish_reason}, ` +
                `completion_tokens=${r.usage?.completion_tokens}`);
  }
} catch (e) {
  console.error('openai_client: non-streaming call failed:', e.status ?? '', e.message);
  failed = true;
}

try {
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let text = '', chunks = 0, finish = null;
  for await (const chunk of stream) {
    chunks++;
    const c = chunk.choices?.[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  if (text.length === 0 || !finish) {
    console.error(`openai_client: stream gave ${chunks} chunks, ${text.length} chars, finish_reason=${finish}`);
    failed = true;
  } else {
    console.log(`streaming ok: ${chunks} chunks, ${text.length} chars, finish_reason=${finish}`);
  }
} catch (e) {
  console.error('openai_client: streaming call failed:', e.status ?? '', e.message);
  failed = true;
}

clearTimeout(killer);
process.exit(failed ? 1 : 0);
