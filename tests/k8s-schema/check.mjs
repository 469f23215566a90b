// Checks Kubernetes objects the way a strict API server would, with
// nothing but the upstream schemas as shipped by the npm package
// kubernetes-models:
//   1. schema validation: kubernetes-models' generated validators (the
//      upstream OpenAPI schemas, compiled);
//   2. unknown fields: the upstream schemas allow unknown fields, but an API
//      server with strict field validation rejects them. We walk every object
//      against the field lists of the same schemas (the package's generated
//      type declarations, one interface per OpenAPI definition) and reject any
//      field the schema does not declare;
//   3. agents.x-k8s.io warm-pool objects and Kyverno ClusterPolicies (not
//      upstream): their shapes are written below from agent-sandbox's v1beta1
//      and Kyverno's v1 API types, with the same strict rules, and their
//      embedded upstream types are checked as in 1 and 2;
//   4. CIDRs: the schemas type ipBlock.cidr/except as plain strings, so we
//      check their syntax (canonical, host bits clear) and that every except
//      lies inside its cidr and family, as the API server's validation does.
//
// Usage: node check.mjs FILE.json  (a JSON array of objects, or a v1 List)
// Prints one line per problem; exit status 0 when every object passes.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const modelsRoot = path.join(here, "node_modules", "kubernetes-models");
const nodeModules = path.join(here, "node_modules");

// ---- the type declarations, parsed --------------------------------------------

const declCache = new Map();

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

// Splits at top-level separators, ignoring those inside {} <> ().
function splitTop(text, sep) {
  const parts = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if ("{<(".includes(ch)) depth++;
    if ("}>)".includes(ch)) depth--;
    if (ch === sep && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) parts.push(cur);
  return parts;
}

function resolveImport(fromFile, spec) {
  let base;
  if (spec.startsWith(".")) base = path.resolve(path.dirname(fromFile), spec);
  else base = path.join(nodeModules, spec);
  base = base.replace(/\.js$/, "");
  return base + ".d.ts";
}

// Returns {imports: Map(name -> file), interfaces: Map(name -> body),
// aliases: Map(exported name -> local name), scalarTypes: Set}.
function loadDecl(file) {
  if (declCache.has(file)) return declCache.get(file);
  const text = stripComments(fs.readFileSync(file, "utf8"));
  const imports = new Map();
  for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g))
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean))
      imports.set(name.split(/\s+as\s+/).pop(), resolveImport(file, m[2]));
  const interfaces = new Map();
  for (const m of text.matchAll(/export interface (\w+)(?: extends [\w, ]+)? \{/g)) {
    let depth = 1;
    let i = m.index + m[0].length;
    const start = i;
    for (; depth > 0 && i < text.length; i++) {
      if (text[i] === "{") depth++;
      else if (text[i] === "}") depth--;
    }
    interfaces.set(m[1], text.slice(start, i - 1));
  }
  const aliases = new Map();
  for (const m of text.matchAll(/export type \{([^}]*)\}/g))
    for (const part of m[1].split(",")) {
      const [local, exported] = part.split(/\s+as\s+/).map((s) => s.trim());
      if (exported) aliases.set(exported, local);
    }
  const scalarTypes = new Set();
  for (const m of text.matchAll(/export type (\w+)\s*=/g)) scalarTypes.add(m[1]);
  const decl = { file, imports, interfaces, aliases, scalarTypes };
  declCache.set(file, decl);
  return decl;
}

// A type: {kind: "object", fields} | {kind: "array", of} | {kind: "map", of}
// | {kind: "scalar"} | {kind: "any"}.
const typeCache = new Map();

function parseType(decl, text) {
  text = text.trim();
  if (text.startsWith("Array<") && text.endsWith(">"))
    return { kind: "array", of: () => parseType(decl, text.slice(6, -1)) };
  const map = text.match(/^\{\s*\[key: string\]:\s*([\s\S]*?);?\s*\}$/);
  if (map) return { kind: "map", of: () => parseType(decl, map[1]) };
  if (text === "any" || text === "object" || text === "unknown" || text.startsWith("{"))
    return { kind: "any" };
  if (/^\w+$/.test(text)) {
    if (decl.imports.has(text)) return namedType(decl.imports.get(text), text);
    if (decl.interfaces.has(text)) return interfaceType(decl, text);
    if (decl.aliases.has(text)) return parseType(decl, decl.aliases.get(text));
  }
  return { kind: "scalar" };
}

function namedType(file, exportedName) {
  const key = file + "#" + exportedName;
  if (typeCache.has(key)) return typeCache.get(key);
  const decl = loadDecl(file);
  const local = decl.aliases.get(exportedName) || exportedName;
  let t;
  if (decl.interfaces.has(local)) t = interfaceType(decl, local);
  else t = { kind: "scalar" };
  typeCache.set(key, t);
  return t;
}

function interfaceType(decl, name) {
  const key = decl.file + "#" + name;
  if (typeCache.has(key)) return typeCache.get(key);
  const t = { kind: "object", fields: new Map() };
  typeCache.set(key, t);
  for (const part of splitTop(decl.interfaces.get(name), ";")) {
    const m = part.trim().match(/^"?([^"?:]+)"?\??:\s*([\s\S]+)$/);
    if (!m) continue;
    const fieldType = m[2];
    let parsed = null;
    t.fields.set(m[1], () => (parsed ??= parseType(decl, fieldType)));
  }
  return t;
}

function kindType(apiVersion, kind) {
  const file = path.join(modelsRoot, apiVersion, kind + ".d.ts");
  if (!fs.existsSync(file)) return null;
  return interfaceType(loadDecl(file), "I" + kind);
}

// ---- agents.x-k8s.io (warm pools) -------------------------------------------------
// Not upstream Kubernetes: the shapes below are written from agent-sandbox's
// extensions.agents.x-k8s.io/v1beta1 API types (SandboxTemplate,
// SandboxWarmPool, SandboxClaim). Every upstream type embedded in them
// (ObjectMeta, PodSpec, ...) is checked with the upstream schemas as above.

const scalar = (what, ok) => ({ kind: "scalar", what, ok });
const str = scalar("a string", (v) => typeof v === "string");
const bool = scalar("a boolean", (v) => typeof v === "boolean");
const int32 = (min) => scalar(`an integer >= ${min}`, (v) => Number.isInteger(v) && v >= min && v < 2 ** 31);
const oneOf = (...vals) => scalar(`one of ${vals.join(", ")}`, (v) => vals.includes(v));
const strMap = { kind: "map", of: () => str };
const obj = (fields, required = []) => ({
  kind: "object",
  fields: new Map(Object.entries(fields).map(([k, v]) => [k, () => v])),
  required,
});
const arr = (of) => ({ kind: "array", of: () => of });
const upstream = (file, name) => ({ kind: "upstream", file, name });

const objectMeta = upstream("@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta", "ObjectMeta");
const crdRoot = (spec) => obj({ apiVersion: str, kind: str, metadata: objectMeta, spec, status: { kind: "any" } }, ["spec"]);
const crds = {
  "extensions.agents.x-k8s.io/v1beta1": {
    SandboxTemplate: crdRoot(obj({
      podTemplate: obj({ metadata: obj({ labels: strMap, annotations: strMap }), spec: upstream("kubernetes-models/v1/PodSpec", "PodSpec") }, ["spec"]),
      volumeClaimTemplates: arr(obj({ metadata: obj({ name: str, labels: strMap, annotations: strMap }), spec: upstream("kubernetes-models/v1/PersistentVolumeClaimSpec", "PersistentVolumeClaimSpec") }, ["spec"])),
      networkPolicy: obj({
        ingress: arr(upstream("kubernetes-models/networking.k8s.io/v1/NetworkPolicyIngressRule", "NetworkPolicyIngressRule")),
        egress: arr(upstream("kubernetes-models/networking.k8s.io/v1/NetworkPolicyEgressRule", "NetworkPolicyEgressRule")),
      }),
      networkPolicyManagement: oneOf("Managed", "Unmanaged"),
      envVarsInjectionPolicy: oneOf("Allowed", "Overrides", "Disallowed"),
      service: bool,
    }, ["podTemplate"])),
    SandboxWarmPool: crdRoot(obj({
      replicas: int32(0),
      sandboxTemplateRef: obj({ name: str }, ["name"]),
      updateStrategy: obj({ type: oneOf("Recreate", "OnReplenish") }),
    }, ["replicas", "sandboxTemplateRef"])),
    SandboxClaim: crdRoot(obj({
      warmPoolRef: obj({ name: str }, ["name"]),
      lifecycle: obj({ shutdownTime: str, ttlSecondsAfterFinished: int32(0), shutdownPolicy: oneOf("Delete", "DeleteForeground", "Retain") }),
      additionalPodMetadata: obj({ labels: strMap, annotations: strMap }),
      env: arr(obj({ name: str, value: str, containerName: str }, ["name", "value"])),
    }, ["warmPoolRef"])),
  },
};

// Kyverno (stockade render --cluster-objects --admission kyverno): the subset
// of kyverno.io/v1 ClusterPolicy stockade writes, from Kyverno's v1 API types
// (Spec, Rule, MatchResources, ResourceDescription, Validation.CEL).
const labelSelector = upstream("@kubernetes-models/apimachinery/apis/meta/v1/LabelSelector", "LabelSelector");
const admissionOps = arr(oneOf("CREATE", "UPDATE", "DELETE", "CONNECT"));
const resourceFilter = obj({
  resources: obj({
    kinds: arr(str), names: arr(str), namespaces: arr(str), operations: admissionOps,
    selector: labelSelector, namespaceSelector: labelSelector, annotations: strMap,
  }),
});
crds["kyverno.io/v1"] = {
  ClusterPolicy: crdRoot(obj({
    validationFailureAction: oneOf("Audit", "Enforce"),
    background: bool,
    rules: arr(obj({
      name: str,
      match: obj({ any: arr(resourceFilter), all: arr(resourceFilter) }),
      exclude: obj({ any: arr(resourceFilter), all: arr(resourceFilter) }),
      celPreconditions: arr(obj({ name: str, expression: str }, ["name", "expression"])),
      validate: obj({
        message: str,
        cel: obj({ expressions: arr(obj({ expression: str, message: str, reason: str, messageExpression: str }, ["expression"])) }),
      }),
    }, ["name"])),
  }, ["rules"])),
};

async function checkUpstream(value, type, where, problems) {
  const base = path.join(nodeModules, type.file);
  const mod = await import(pathToFileURL(base + ".js").href);
  try {
    new mod[type.name](value).validate();
  } catch (e) {
    problems.push(`${where}: schema: ${e.message}`);
  }
  strictWalk(value, interfaceType(loadDecl(base + ".d.ts"), "I" + type.name), where, problems);
}

// Walks a hand-written CRD shape: types, required fields, unknown fields;
// embedded upstream types go to the upstream checks.
async function crdWalk(value, type, where, problems) {
  if (value === undefined) return;
  switch (type.kind) {
    case "upstream":
      return checkUpstream(value, type, where, problems);
    case "scalar":
      if (!type.ok(value)) problems.push(`${where}: must be ${type.what}`);
      return;
    case "object":
      if (!value || typeof value !== "object" || Array.isArray(value)) return problems.push(`${where}: must be an object`);
      for (const r of type.required) if (value[r] === undefined) problems.push(`${where}: missing required field "${r}"`);
      for (const [k, v] of Object.entries(value)) {
        const f = type.fields.get(k);
        if (!f) problems.push(`${where}: unknown field "${k}"`);
        else await crdWalk(v, f(), `${where}.${k}`, problems);
      }
      return;
    case "array":
      if (!Array.isArray(value)) return problems.push(`${where}: must be a list`);
      for (const [i, v] of value.entries()) await crdWalk(v, type.of(), `${where}[${i}]`, problems);
      return;
    case "map":
      if (!value || typeof value !== "object" || Array.isArray(value)) return problems.push(`${where}: must be a map`);
      for (const [k, v] of Object.entries(value)) await crdWalk(v, type.of(), `${where}.${k}`, problems);
      return;
    default:
      return;
  }
}

function strictWalk(value, type, where, problems) {
  if (value === null || value === undefined) return;
  switch (type.kind) {
    case "object":
      if (typeof value !== "object" || Array.isArray(value)) return; // the validator reports it
      for (const [k, v] of Object.entries(value)) {
        const f = type.fields.get(k);
        if (!f) problems.push(`${where}: unknown field "${k}"`);
        else strictWalk(v, f(), `${where}.${k}`, problems);
      }
      return;
    case "array":
      if (Array.isArray(value)) value.forEach((v, i) => strictWalk(v, type.of(), `${where}[${i}]`, problems));
      return;
    case "map":
      if (value && typeof value === "object")
        for (const [k, v] of Object.entries(value)) strictWalk(v, type.of(), `${where}.${k}`, problems);
      return;
    default:
      return;
  }
}

// ---- CIDRs --------------------------------------------------------------------------

function parseCidr(s) {
  if (typeof s !== "string") return null;
  const m = s.match(/^([0-9a-fA-F:.]+)\/(\d{1,3})$/);
  if (!m) return null;
  const fam = net.isIPv4(m[1]) ? 4 : net.isIPv6(m[1]) ? 6 : 0;
  if (!fam) return null;
  if (fam === 4 && m[1].split(".").some((o) => o.length > 1 && o.startsWith("0"))) return null;
  const prefix = Number(m[2]);
  if (String(prefix) !== m[2] || prefix > (fam === 4 ? 32 : 128)) return null;
  return { fam, bits: addrBits(m[1], fam), prefix };
}

function addrBits(a, fam) {
  if (fam === 4) return a.split(".").map((o) => Number(o).toString(2).padStart(8, "0")).join("");
  let [head, tail] = a.includes("::") ? a.split("::") : [a, null];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => parseInt(g, 16).toString(2).padStart(16, "0")).join("");
}

function checkIpBlocks(value, where, problems) {
  if (Array.isArray(value)) return value.forEach((v, i) => checkIpBlocks(v, `${where}[${i}]`, problems));
  if (!value || typeof value !== "object") return;
  for (const [k, v] of Object.entries(value)) {
    if (k === "ipBlock" && v && typeof v === "object") {
      const c = parseCidr(v.cidr);
      if (!c) problems.push(`${where}.ipBlock.cidr: "${v.cidr}" is not a valid CIDR`);
      else if (c.bits.slice(c.prefix).includes("1"))
        problems.push(`${where}.ipBlock.cidr: "${v.cidr}" has host bits set`);
      for (const [i, e] of (v.except || []).entries()) {
        const x = parseCidr(e);
        if (!x) problems.push(`${where}.ipBlock.except[${i}]: "${e}" is not a valid CIDR`);
        else if (c && (x.fam !== c.fam || x.prefix < c.prefix || x.bits.slice(0, c.prefix) !== c.bits.slice(0, c.prefix)))
          problems.push(`${where}.ipBlock.except[${i}]: "${e}" is not inside ${v.cidr}`);
      }
    }
    checkIpBlocks(v, `${where}.${k}`, problems);
  }
}

// ---- main -------------------------------------------------------------------------------

async function check(obj, i) {
  const problems = [];
  const label = `[${i}] ${obj?.kind}/${obj?.metadata?.name}`;
  if (!obj || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string")
    return [`${label}: no apiVersion/kind`];
  const crd = crds[obj.apiVersion]?.[obj.kind];
  if (crd) {
    await crdWalk(obj, crd, label, problems);
    checkIpBlocks(obj, label, problems);
    return problems;
  }
  const modFile = path.join(modelsRoot, obj.apiVersion, obj.kind + ".js");
  if (!fs.existsSync(modFile)) return [`${label}: no upstream schema for ${obj.apiVersion} ${obj.kind}`];
  const mod = await import(pathToFileURL(modFile).href);
  const Cls = mod[obj.kind];
  try {
    new Cls(obj).validate();
  } catch (e) {
    problems.push(`${label}: schema: ${e.message}`);
  }
  strictWalk(obj, kindType(obj.apiVersion, obj.kind), label, problems);
  checkIpBlocks(obj, label, problems);
  return problems;
}

const input = JSON.parse(fs.readFileSync(process.argv[2] || 0, "utf8"));
const objects = Array.isArray(input) ? input : input.kind === "List" ? input.items : [input];
let bad = 0;
for (const [i, obj] of objects.entries()) {
  for (const p of await check(obj, i)) {
    console.log(p);
    bad++;
  }
}
console.log(`checked ${objects.length} objects: ${bad} problem${bad === 1 ? "" : "s"}`);
process.exit(bad ? 1 : 0);
