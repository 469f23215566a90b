// Evaluates the CEL of stockade's admission guard (ValidatingAdmissionPolicies,
// or the Kyverno ClusterPolicies of --admission kyverno) against
// admission requests, the way the API server would: a request is admitted
// when a policy's matchConditions do not all hold, or when every validation
// holds. Uses @marcbachmann/cel-js (a CEL implementation) to parse and
// evaluate the exact expressions `stockade render --cluster-objects` prints.
//
// Usage: node cel.mjs CLUSTER-OBJECTS.json   (a v1 List or a JSON array)
// Prints one line per case; exit status 0 when every case gives the expected
// decision.
import fs from "node:fs";
import { parse } from "@marcbachmann/cel-js";

const input = JSON.parse(fs.readFileSync(process.argv[2] || 0, "utf8"));
const objects = Array.isArray(input) ? input : input.items;
// Both engines reduce to {matchConditions, validations}: a
// ValidatingAdmissionPolicy directly, a Kyverno ClusterPolicy through its one
// rule's celPreconditions and validate.cel.expressions.
const policies = new Map();
for (const o of objects) {
  if (o.kind === "ValidatingAdmissionPolicy") policies.set(o.metadata.name, o.spec);
  if (o.kind === "ClusterPolicy" && o.apiVersion === "kyverno.io/v1") {
    const rule = o.spec.rules[0];
    policies.set(o.metadata.name, {
      matchConditions: rule.celPreconditions,
      validations: rule.validate.cel.expressions,
    });
  }
}

function decide(policyName, vars) {
  const spec = policies.get(policyName);
  if (!spec) throw new Error(`no policy ${policyName}`);
  for (const mc of spec.matchConditions || []) if (parse(mc.expression)(vars) !== true) return "admit";
  for (const v of spec.validations) if (parse(v.expression)(vars) !== true) return "deny";
  return "admit";
}

const ns = (labels) => ({ metadata: labels ? { name: "s", labels } : { name: "s" } });
const pod = (spec) => ({ metadata: { name: "p" }, spec: { containers: [{ name: "c", image: "i" }], ...spec } });
const privileged = [{ name: "c", image: "i", securityContext: { privileged: true } }];
const user = (username) => ({ userInfo: { username, groups: [] } });
const managedPolicy = { metadata: { name: "deny-egress", labels: { "app.kubernetes.io/managed-by": "stockade" } } };

const cases = [
  ["pod with the namespace's runtime class", "stockade-pod-guard",
    { namespaceObject: ns({ "stockade.dev/runtime-class": "gvisor" }), object: pod({ runtimeClassName: "gvisor" }) }, "admit"],
  ["pod without a runtime class where one is required", "stockade-pod-guard",
    { namespaceObject: ns({ "stockade.dev/runtime-class": "gvisor" }), object: pod({}) }, "deny"],
  ["pod with another runtime class", "stockade-pod-guard",
    { namespaceObject: ns({ "stockade.dev/runtime-class": "gvisor" }), object: pod({ runtimeClassName: "runc" }) }, "deny"],
  ["pod in a namespace without a runtime class label", "stockade-pod-guard",
    { namespaceObject: ns({ team: "a" }), object: pod({}) }, "admit"],
  ["pod in a namespace without labels", "stockade-pod-guard",
    { namespaceObject: ns(null), object: pod({}) }, "admit"],
  ["privileged container without the exception label", "stockade-pod-guard",
    { namespaceObject: ns({ team: "a" }), object: pod({ containers: privileged }) }, "deny"],
  ["privileged init container without the exception label", "stockade-pod-guard",
    { namespaceObject: ns(null), object: pod({ initContainers: privileged }) }, "deny"],
  ["privileged container with the exception label", "stockade-pod-guard",
    { namespaceObject: ns({ "stockade.dev/operator-exception": "true" }), object: pod({ containers: privileged }) }, "admit"],
  ["privileged container with the exception label set to false", "stockade-pod-guard",
    { namespaceObject: ns({ "stockade.dev/operator-exception": "false" }), object: pod({ containers: privileged }) }, "deny"],
  ["a user deletes stockade's NetworkPolicy", "stockade-protect-networkpolicies",
    { oldObject: managedPolicy, object: null, request: user("alice") }, "deny"],
  ["a sandbox's own service account edits stockade's NetworkPolicy", "stockade-protect-networkpolicies",
    { oldObject: managedPolicy, object: managedPolicy, request: user("system:serviceaccount:lab-s-joe:s-joe") }, "deny"],
  ["stockade's controller deletes its NetworkPolicy", "stockade-protect-networkpolicies",
    { oldObject: managedPolicy, object: null, request: user("system:serviceaccount:stockade-system:controller") }, "admit"],
  ["the namespace controller empties a namespace being deleted", "stockade-protect-networkpolicies",
    { oldObject: managedPolicy, object: null, request: user("system:serviceaccount:kube-system:namespace-controller") }, "admit"],
  ["the controller manager without per-controller credentials", "stockade-protect-networkpolicies",
    { oldObject: managedPolicy, object: null, request: user("system:kube-controller-manager") }, "admit"],
  ["another kube-system service account deletes stockade's NetworkPolicy", "stockade-protect-networkpolicies",
    { oldObject: managedPolicy, object: null, request: user("system:serviceaccount:kube-system:replicaset-controller") }, "deny"],
  ["a user deletes an operator's own NetworkPolicy", "stockade-protect-networkpolicies",
    { oldObject: { metadata: { name: "mine" } }, object: null, request: user("alice") }, "admit"],
];

let failed = 0;
for (const [name, policy, vars, want] of cases) {
  let got;
  try {
    got = decide(policy, vars);
  } catch (e) {
    got = `error: ${e.message}`;
  }
  const ok = got === want;
  if (!ok) failed++;
  console.log(`${ok ? "ok" : "FAIL"}: ${name}: ${got}${ok ? "" : ` (want ${want})`}`);
}
console.log(`admission cases: ${cases.length - failed} as expected, ${failed} not`);
process.exit(failed ? 1 : 0);
