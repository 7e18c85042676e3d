// Checks Shoal's OpenAPI document and real answers against it, with tools independent of the
// gateway's generator (tests/tests/all/openapi.rs runs it).
//
// node check.mjs <openapi.json> <exchanges.json>
//   exchanges: [{method, path_template, status, content_type, body}] — body parsed JSON for a
//   JSON answer, the text otherwise, null for none.
//
// 1. The document must validate as OpenAPI 3.1 with @seriousme/openapi-schema-validator (the
//    official JSON Schema of the specification) and @readme/openapi-parser (which also checks
//    what that schema cannot: path parameters declared, unique operation ids, component names).
// 2. Every example in it must match its schema.
// 3. Every exchange must be documented — its path and method, its status, its content type —
//    and its body must match the documented schema (ajv, JSON Schema 2020-12, formats checked).
// Prints each failure and exits 1 if there was any; prints a summary and exits 0 otherwise.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import { validate as readmeValidate, compileErrors } from "@readme/openapi-parser";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [documentPath, exchangesPath] = process.argv.slice(2);
const document = JSON.parse(readFileSync(documentPath, "utf8"));
const exchanges = JSON.parse(readFileSync(exchangesPath, "utf8"));
const failures = [];
const fail = (what) => failures.push(what);

// 1. The document itself. Each validator gets its own copy: both may resolve references in place.
const copy = () => structuredClone(document);
const seriousme = new Validator();
const schemaResult = await seriousme.validate(copy());
if (!schemaResult.valid) {
  fail(`not valid OpenAPI (@seriousme/openapi-schema-validator): ${JSON.stringify(schemaResult.errors, null, 2)}`);
} else if (seriousme.version !== "3.1") {
  fail(`OpenAPI ${seriousme.version}, not 3.1`);
}
const readmeResult = await readmeValidate(copy());
if (!readmeResult.valid) fail(`not valid OpenAPI (@readme/openapi-parser): ${compileErrors(readmeResult)}`);

// The document's schemas for ajv. `example` and the like are OpenAPI's own keywords (3.1 keeps
// them); any other unknown keyword is an error. The component schemas are registered under an id
// of their own, and every `#/components/schemas/…` reference points there, so that ajv sees
// schemas alone (not the rest of the document) and each schema compiles on its own.
const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false });
addFormats(ajv);
ajv.addVocabulary(["example", "discriminator", "xml", "externalDocs"]);
const COMPONENTS_ID = "urn:shoal:openapi:components";
const compiled = new Map();
function validatorAt(where, schema) {
  if (!compiled.has(where)) compiled.set(where, ajv.compile(rewriteRefs(schema)));
  return compiled.get(where);
}
function rewriteRefs(value) {
  if (Array.isArray(value)) return value.map(rewriteRefs);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) =>
        key === "$ref" && typeof inner === "string" && inner.startsWith("#/components/schemas/")
          ? [key, `${COMPONENTS_ID}#/$defs/${inner.slice("#/components/schemas/".length)}`]
          : [key, rewriteRefs(inner)],
      ),
    );
  }
  return value;
}
ajv.addSchema({ $id: COMPONENTS_ID, $defs: rewriteRefs(document.components?.schemas ?? {}) });

function describe(errors) {
  return ajv.errorsText(errors, { separator: "\n    ", dataVar: "body" });
}

function resolveResponse(response) {
  const ref = response?.$ref;
  if (!ref) return response;
  const name = ref.replace("#/components/responses/", "");
  return document.components?.responses?.[name];
}

const essence = (contentType) => (contentType ?? "").split(";")[0].trim().toLowerCase();

// 2. Examples must match their schemas.
let examples = 0;
function checkExamples(where, media) {
  if (!media?.schema) return;
  const values = [];
  if (media.example !== undefined) values.push(media.example);
  for (const example of Object.values(media.examples ?? {})) {
    if (example.value !== undefined) values.push(example.value);
  }
  for (const value of values) {
    examples += 1;
    const check = validatorAt(where, media.schema);
    if (!check(value)) fail(`the example of ${where} does not match its schema:\n    ${describe(check.errors)}`);
  }
}
for (const [path, item] of Object.entries(document.paths ?? {})) {
  for (const [method, operation] of Object.entries(item)) {
    for (const [type, media] of Object.entries(operation.requestBody?.content ?? {})) {
      checkExamples(`${method.toUpperCase()} ${path} request ${type}`, media);
    }
    for (const [status, response] of Object.entries(operation.responses ?? {})) {
      for (const [type, media] of Object.entries(resolveResponse(response)?.content ?? {})) {
        checkExamples(`${method.toUpperCase()} ${path} ${status} ${type}`, media);
      }
    }
  }
}
for (const [name, schema] of Object.entries(document.components?.schemas ?? {})) {
  for (const value of schema.examples ?? []) {
    examples += 1;
    const check = validatorAt(`schema ${name}`, schema);
    if (!check(value)) fail(`an example of schema ${name} does not match it:\n    ${describe(check.errors)}`);
  }
}

// 3. Real answers.
for (const exchange of exchanges) {
  const { method, path_template: path, status, content_type: contentType, body } = exchange;
  const what = `${method} ${path} → ${status}`;
  const operation = document.paths?.[path]?.[method.toLowerCase()];
  if (!operation) {
    fail(`${what}: ${method} ${path} is not documented`);
    continue;
  }
  const response = resolveResponse(
    operation.responses?.[String(status)] ?? operation.responses?.[`${String(status)[0]}XX`] ?? operation.responses?.default,
  );
  if (!response) {
    fail(`${what}: status ${status} is not documented (documented: ${Object.keys(operation.responses ?? {}).join(", ")})`);
    continue;
  }
  const content = response.content ?? {};
  if (Object.keys(content).length === 0) {
    if (body !== null && body !== "") fail(`${what}: a body is answered where none is documented`);
    continue;
  }
  const documented = Object.keys(content).find((type) => essence(type) === essence(contentType));
  if (documented === undefined) {
    fail(`${what}: content type ${contentType} is not documented (documented: ${Object.keys(content).join(", ")})`);
    continue;
  }
  const schema = content[documented].schema;
  if (!schema) continue;
  const check = validatorAt(`${what} ${documented}`, schema);
  if (!check(body)) fail(`${what}: the body does not match its schema:\n    ${describe(check.errors)}\n  body: ${JSON.stringify(body).slice(0, 2000)}`);
}

if (failures.length > 0) {
  for (const failure of failures) console.log(`FAILED: ${failure}\n`);
  console.log(`${failures.length} failed`);
  process.exit(1);
}
console.log(`the document is valid OpenAPI ${document.openapi}; ${examples} examples and ${exchanges.length} exchanges match it`);
