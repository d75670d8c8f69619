/**
 * Checks the deployment artefacts in deploy/: Kubernetes manifests, the Grafana
 * dashboard, the Prometheus alert rules (with promtool) and the Dockerfile.
 *
 * The metric names Weir exports are listed here once (`WEIR_METRICS`); a
 * test against a running Weir can import them to check its /metrics.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { validateConfig } from '../src/config';

import { WEIR_METRICS, isWeirSeriesName } from './helpers/metric-names';
export { WEIR_METRICS };

const PROMQL_KEYWORDS = new Set([
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset',
  'and', 'or', 'unless', 'atan2', 'inf', 'nan',
]);

/**
 * The metric names a PromQL expression selects. Enough PromQL for the rules and
 * panels here: strings, label matchers, range and subquery brackets, grouping
 * clauses, durations and numbers are removed; what remains and is not a function call or a
 * keyword is a metric name. `{__name__="x"}` selectors are not supported and fail.
 */
export function metricNamesIn(expr: string): string[] {
  assert.ok(!expr.includes('__name__'), `__name__ selectors are not checked: ${expr}`);
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/(?<![\w:])(?:\d+(?:ms|s|m|h|d|w|y))+(?![\w:])/g, ' ') // durations (offset 5m)
    .replace(/(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w:])/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const word = m[0];
    const rest = stripped.slice((m.index ?? 0) + word.length);
    if (/^\s*\(/.test(rest)) continue; // a function call
    if (PROMQL_KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

/** The repository root: the nearest folder above this file with Weir's package.json, else the working directory. */
function findRepoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        const json: unknown = JSON.parse(fs.readFileSync(pkg, 'utf8'));
        if (isRecord(json) && json['name'] === 'weir' && fs.existsSync(path.join(dir, 'deploy'))) return dir;
      } catch {
        // Not a package.json we can read: keep walking up.
      }
    }
    if (path.dirname(dir) === dir) break;
  }
  if (fs.existsSync(path.join(process.cwd(), 'deploy', 'k8s'))) return process.cwd();
  throw new Error(`cannot find the Weir repository root from ${__dirname} or ${process.cwd()}`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function rec(x: unknown, what: string): Record<string, unknown> {
  assert.ok(isRecord(x), `${what} is not a mapping: ${JSON.stringify(x)}`);
  return x;
}

function list(x: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(x), `${what} is not a list: ${JSON.stringify(x)}`);
  return x;
}

function str(x: unknown, what: string): string {
  assert.equal(typeof x, 'string', `${what} is not a string: ${JSON.stringify(x)}`);
  return x as string;
}

/** Follows a dotted path through mappings, failing with the path when a step is missing. */
function at(x: unknown, dotted: string): unknown {
  const keys = dotted.split('.');
  let cur: unknown = x;
  keys.forEach((key, i) => {
    cur = rec(cur, keys.slice(0, i).join('.') || '(root)')[key];
    assert.notEqual(cur, undefined, `missing ${keys.slice(0, i + 1).join('.')}`);
  });
  return cur;
}

const ROOT = findRepoRoot();
const DEPLOY = path.join(ROOT, 'deploy');
const K8S = path.join(DEPLOY, 'k8s');
const NAMESPACE = 'llm-optimizer';

interface Manifest {
  file: string;
  doc: Record<string, unknown>;
}

function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of fs.readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    for (const d of parseAllDocuments(fs.readFileSync(path.join(K8S, file), 'utf8'))) {
      assert.deepEqual(d.errors, [], `${file}: YAML errors`);
      const doc: unknown = d.toJS();
      if (doc === null || doc === undefined) continue; // an empty document
      out.push({ file, doc: rec(doc, file) });
    }
  }
  return out;
}

function findKind(manifests: Manifest[], kind: string): Record<string, unknown> {
  const found = manifests.filter((m) => m.doc['kind'] === kind);
  assert.equal(found.length, 1, `expected exactly one ${kind}, found ${found.length}`);
  return found[0]!.doc;
}

describe('deploy/k8s', () => {
  const manifests = loadManifests();
  const statefulSet = findKind(manifests, 'StatefulSet');
  const podSpec = rec(at(statefulSet, 'spec.template.spec'), 'pod spec');
  const containers = list(podSpec['containers'], 'containers').map((c, i) => rec(c, `containers[${i}]`));
  assert.equal(containers.length, 1, 'one container');
  const container = containers[0]!;
  const configMap = findKind(manifests, 'ConfigMap');
  const weirConfig = rec(parse(str(rec(at(configMap, 'data'), 'data')['config.yaml'], 'data[config.yaml]')), 'config.yaml');

  test('every object is well-formed and lives in llm-optimizer', () => {
    for (const { file, doc } of manifests) {
      assert.equal(typeof doc['apiVersion'], 'string', `${file}: apiVersion`);
      assert.equal(typeof doc['kind'], 'string', `${file}: kind`);
      if (doc['kind'] === 'Kustomization') continue;
      const meta = rec(doc['metadata'], `${file}: metadata`);
      if (doc['kind'] === 'Namespace') assert.equal(meta['name'], NAMESPACE);
      else assert.equal(meta['namespace'], NAMESPACE, `${file}: namespace`);
    }
    assert.equal(at(findKind(manifests, 'Namespace'), 'metadata.name'), NAMESPACE);
  });

  test('kustomization lists every other manifest', () => {
    const kustomization = findKind(manifests, 'Kustomization');
    assert.equal(kustomization['namespace'], NAMESPACE);
    const resources = list(kustomization['resources'], 'resources').map((r) => str(r, 'resource')).sort();
    const files = [...new Set(manifests.map((m) => m.file))].filter((f) => !/^kustomization\.ya?ml$/.test(f)).sort();
    assert.deepEqual(resources, files);
  });

  test('ConfigMap holds a Weir config with a kafka source', () => {
    assert.equal(at(configMap, 'metadata.name'), 'stream-processor-config');
    const source = rec(weirConfig['source'], 'source');
    assert.equal(source['type'], 'kafka');
    assert.deepEqual(source['brokers'], ['kafka:9092']);
    assert.equal(source['topic'], 'llm-events');
    assert.equal(source['groupId'], 'weir');
    assert.equal(source['fromBeginning'], true);
    assert.deepEqual(weirConfig['eventTime'], { field: 'timestamp', maxOutOfOrdernessMs: 30000, allowedLatenessMs: 60000 });
    const aggregations = list(weirConfig['aggregations'], 'aggregations').map((a, i) => rec(a, `aggregations[${i}]`));
    assert.deepEqual(aggregations.map((a) => a['name']), ['latency_metrics', 'token_usage']);
    // The real config schema accepts it as it is.
    assert.doesNotThrow(() => validateConfig(weirConfig, 'configmap config.yaml'));
    assert.deepEqual(list(weirConfig['sinks'], 'sinks'), [{ type: 'kafka', topic: 'llm-metrics' }]);
    assert.deepEqual(weirConfig['deadLetter'], { type: 'kafka', topic: 'llm-events-dlq' });
    assert.equal(at(weirConfig, 'state.backend'), 'rocksdb');
    assert.equal(at(weirConfig, 'checkpoint.retain'), 3);
    assert.equal(at(weirConfig, 'metrics.host'), '0.0.0.0');
    assert.equal(typeof at(weirConfig, 'metrics.port'), 'number');
  });

  test('StatefulSet stream-processor: 3 replicas, resources, pod annotations, env', () => {
    assert.equal(at(statefulSet, 'metadata.name'), 'stream-processor');
    assert.equal(at(statefulSet, 'spec.replicas'), 3);
    assert.equal(at(statefulSet, 'spec.serviceName'), 'stream-processor');
    assert.equal(podSpec['terminationGracePeriodSeconds'], 60);
    const selector = rec(at(statefulSet, 'spec.selector.matchLabels'), 'selector');
    const podLabels = rec(at(statefulSet, 'spec.template.metadata.labels'), 'pod labels');
    for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v, `pod label ${k} matches the selector`);

    assert.deepEqual(at(container, 'resources.requests'), { cpu: '1000m', memory: '2Gi' });
    assert.deepEqual(at(container, 'resources.limits'), { cpu: '1000m', memory: '2Gi' });

    const annotations = rec(at(statefulSet, 'spec.template.metadata.annotations'), 'pod annotations');
    assert.equal(annotations['prometheus.io/scrape'], 'true');
    assert.equal(annotations['prometheus.io/port'], String(at(weirConfig, 'metrics.port')));
    assert.equal(annotations['prometheus.io/path'], '/metrics');

    const env = list(container['env'], 'env').map((e, i) => rec(e, `env[${i}]`));
    const byName = new Map(env.map((e) => [e['name'], e]));
    assert.equal(at(byName.get('WEIR_INSTANCE_ID'), 'valueFrom.fieldRef.fieldPath'), 'metadata.name');
    const secretRefs = env.filter((e) => isRecord(e['valueFrom']) && isRecord(e['valueFrom']['secretKeyRef']));
    assert.equal(secretRefs.length, 1, 'one env var from a Secret');
    const secretRef = rec(at(secretRefs[0], 'valueFrom.secretKeyRef'), 'secretKeyRef');
    assert.deepEqual(secretRef, { name: 'stream-processor-kafka', key: 'sasl-password', optional: true });
  });

  test('state and checkpoints live on the volumeClaimTemplate, config on the ConfigMap', () => {
    const claims = list(at(statefulSet, 'spec.volumeClaimTemplates'), 'volumeClaimTemplates').map((c, i) =>
      rec(c, `volumeClaimTemplates[${i}]`),
    );
    assert.deepEqual(claims.map((c) => at(c, 'metadata.name')), ['data']);
    assert.ok(list(at(claims[0], 'spec.accessModes'), 'accessModes').includes('ReadWriteOnce'));
    assert.match(str(at(claims[0], 'spec.resources.requests.storage'), 'storage'), /^\d+[GT]i$/);

    const mounts = list(container['volumeMounts'], 'volumeMounts').map((m, i) => rec(m, `volumeMounts[${i}]`));
    const mountOf = (name: string): string => {
      const m = mounts.find((x) => x['name'] === name);
      assert.ok(m, `volume ${name} is mounted`);
      return str(m['mountPath'], `${name}.mountPath`);
    };
    const dataDir = mountOf('data');
    assert.equal(dataDir, '/var/lib/weir');
    for (const dir of ['state.dir', 'checkpoint.dir']) {
      const d = str(at(weirConfig, dir), dir);
      assert.ok(d.startsWith(dataDir + '/'), `${dir} ${d} is on the data volume ${dataDir}`);
    }

    const volumes = list(podSpec['volumes'], 'volumes').map((v, i) => rec(v, `volumes[${i}]`));
    const configVolume = volumes.find((v) => isRecord(v['configMap']) && v['configMap']['name'] === 'stream-processor-config');
    assert.ok(configVolume, 'the ConfigMap is a volume');
    const configDir = mountOf(str(configVolume['name'], 'config volume name'));
    assert.equal(configDir, '/etc/weir');
    const args = list(container['args'] ?? [], 'args');
    if (args.length > 0) assert.deepEqual(args, ['run', '--config', `${configDir}/config.yaml`]);
  });

  test('TLS files and the SASL password reach the pod from Secrets: the commented source.ssl and source.sasl of the ConfigMap', () => {
    const raw = str(rec(at(configMap, 'data'), 'data')['config.yaml'], 'config.yaml');
    const commented = [...raw.matchAll(/^\s*# ((?:ssl|sasl): \{.*\})$/gm)].map((m) => m[1]!);
    assert.equal(commented.length, 2, 'a commented ssl and sasl line');
    const extra = rec(parse(commented.join('\n')), 'ssl and sasl');
    const cfg = validateConfig({ ...weirConfig, source: { ...rec(weirConfig['source'], 'source'), ...extra } }, 'configmap with ssl and sasl');
    assert.ok(cfg.source.type === 'kafka' && typeof cfg.source.ssl === 'object' && cfg.source.sasl !== undefined);
    const sasl = cfg.source.sasl;
    // Every file of source.ssl is a key of a Secret volume mounted where the path points.
    const mounts = list(container['volumeMounts'], 'volumeMounts').map((m) => rec(m, 'volumeMount'));
    const volumes = new Map(list(podSpec['volumes'], 'volumes').map((v) => [rec(v, 'volume')['name'], rec(v, 'volume')]));
    for (const file of [cfg.source.ssl.ca, cfg.source.ssl.cert, cfg.source.ssl.key]) {
      assert.ok(file !== undefined);
      const mount = mounts.find((m) => path.posix.dirname(file) === m['mountPath']);
      assert.ok(mount, `${file}: no volume is mounted at ${path.posix.dirname(file)}`);
      const secret = rec(volumes.get(mount['name'])?.['secret'], `volume ${String(mount['name'])}.secret`);
      assert.equal(secret['secretName'], 'stream-processor-kafka-tls');
      assert.equal(secret['optional'], true, 'pods start without TLS');
      assert.ok(['ca.crt', 'tls.crt', 'tls.key'].includes(path.posix.basename(file)), `${file}: a key of a kubernetes.io/tls Secret`);
    }
    // The password: the environment variable sasl.passwordEnv names, from a Secret.
    const env = list(container['env'], 'env').map((e) => rec(e, 'env'));
    const pw = env.find((e) => e['name'] === sasl.passwordEnv);
    assert.ok(pw, `env ${String(sasl.passwordEnv)}`);
    assert.equal(at(pw, 'valueFrom.secretKeyRef.name'), 'stream-processor-kafka');
  });

  test('probes /healthz and /readyz on the port the metrics config uses', () => {
    const metricsPort = at(weirConfig, 'metrics.port');
    const ports = list(container['ports'], 'ports').map((p, i) => rec(p, `ports[${i}]`));
    const resolve = (port: unknown): unknown => {
      if (typeof port === 'number') return port;
      const named = ports.find((p) => p['name'] === port);
      assert.ok(named, `container port named ${String(port)}`);
      return named['containerPort'];
    };
    assert.ok(ports.some((p) => p['containerPort'] === metricsPort), 'the container exposes the metrics port');
    assert.equal(at(container, 'livenessProbe.httpGet.path'), '/healthz');
    assert.equal(resolve(at(container, 'livenessProbe.httpGet.port')), metricsPort);
    assert.equal(at(container, 'readinessProbe.httpGet.path'), '/readyz');
    assert.equal(resolve(at(container, 'readinessProbe.httpGet.port')), metricsPort);
  });

  test('headless Service for the StatefulSet with the metrics port', () => {
    const service = findKind(manifests, 'Service');
    assert.equal(at(service, 'metadata.name'), 'stream-processor');
    assert.equal(at(service, 'spec.clusterIP'), 'None');
    const podLabels = rec(at(statefulSet, 'spec.template.metadata.labels'), 'pod labels');
    for (const [k, v] of Object.entries(rec(at(service, 'spec.selector'), 'service selector'))) {
      assert.equal(podLabels[k], v, `service selects pods by ${k}`);
    }
    const ports = list(at(service, 'spec.ports'), 'service ports').map((p, i) => rec(p, `service ports[${i}]`));
    assert.ok(ports.some((p) => p['port'] === at(weirConfig, 'metrics.port')), 'service exposes the metrics port');
  });

  test('PodDisruptionBudget allows one pod down', () => {
    const pdb = findKind(manifests, 'PodDisruptionBudget');
    assert.equal(at(pdb, 'spec.maxUnavailable'), 1);
    assert.deepEqual(at(pdb, 'spec.selector.matchLabels'), at(statefulSet, 'spec.selector.matchLabels'));
  });
});

/** Every PromQL expression of the dashboard's panels. */
function dashboardExprs(dashboard: Record<string, unknown>): string[] {
  return list(dashboard['panels'], 'panels').flatMap((p, i) =>
    list(rec(p, `panels[${i}]`)['targets'], `panels[${i}].targets`).map((t, j) =>
      str(rec(t, `panels[${i}].targets[${j}]`)['expr'], `panels[${i}].targets[${j}].expr`),
    ),
  );
}

function alertRules(): Record<string, unknown>[] {
  const rules = rec(parse(fs.readFileSync(path.join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8')), 'alerts.yml');
  return list(rules['groups'], 'groups').flatMap((g, i) =>
    list(rec(g, `groups[${i}]`)['rules'], `groups[${i}].rules`).map((r, j) => rec(r, `groups[${i}].rules[${j}]`)),
  );
}

describe('metric names in PromQL', () => {
  test('the extractor finds metric names and nothing else', () => {
    assert.deepEqual(
      metricNamesIn('histogram_quantile(0.99, sum by (le) (rate(processing_latency_seconds_bucket{job="weir"}[5m]))) > 1'),
      ['processing_latency_seconds_bucket'],
    );
    assert.deepEqual(metricNamesIn('sum(rate(errors_total[5m])) / sum(rate(events_processed_total[5m]))').sort(), [
      'errors_total',
      'events_processed_total',
    ]);
    assert.deepEqual(metricNamesIn('sum(state_size_bytes) > 10e9'), ['state_size_bytes']);
    assert.deepEqual(metricNamesIn('sum without (partition) (kafka_consumer_lag offset 5m) > bool 1.5e+3'), [
      'kafka_consumer_lag',
    ]);
    assert.ok(isWeirSeriesName('checkpoint_duration_seconds_count'));
    assert.ok(!isWeirSeriesName('events_processed_total_bucket'));
    assert.ok(!isWeirSeriesName('up'));
  });
});

describe('deploy/grafana/dashboard.json', () => {
  const dashboard = rec(JSON.parse(fs.readFileSync(path.join(DEPLOY, 'grafana', 'dashboard.json'), 'utf8')), 'dashboard');

  test('ten timeseries panels with the expected queries', () => {
    const panels = list(dashboard['panels'], 'panels').map((p, i) => rec(p, `panels[${i}]`));
    assert.equal(panels.length, 10);
    for (const p of panels) assert.equal(p['type'], 'timeseries', `panel ${String(p['title'])}`);
    const ids = panels.map((p) => p['id']);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const exprs = dashboardExprs(dashboard);
    const quantile = (q: string): string =>
      `histogram_quantile(${q}, sum by (le) (rate(processing_latency_seconds_bucket[5m])))`;
    for (const expected of [
      'sum(rate(records_consumed_total[1m]))',
      quantile('0.5'),
      quantile('0.95'),
      quantile('0.99'),
      'sum by (partition) (kafka_consumer_lag)',
      'sum(state_size_bytes)',
      'sum(rate(errors_total[5m])) / sum(rate(records_consumed_total[5m]))',
      'sum by (aggregation) (window_count)',
      'max by (partition) (watermark_lag_seconds)',
      'max by (partition) (partition_idle)',
      'sum by (aggregation) (rate(late_events_total[5m]))',
      'sum(rate(checkpoint_duration_seconds_count[5m])) * 60',
      'histogram_quantile(0.95, sum by (le) (rate(checkpoint_duration_seconds_bucket[15m])))',
      'histogram_quantile(0.99, sum by (le) (rate(result_latency_seconds_bucket[5m])))',
    ]) {
      assert.ok(exprs.includes(expected), `a panel queries ${expected}`);
    }
  });

  test('each event is counted once: no rate of events_processed_total summed over aggregations', () => {
    // events_processed_total has one series per aggregation, each counting every record:
    // a sum over them is the input rate times the number of aggregations.
    for (const expr of dashboardExprs(dashboard)) assert.ok(!expr.includes('events_processed_total'), expr);
    for (const rule of alertRules()) assert.ok(!String(rule['expr']).includes('events_processed_total'), String(rule['expr']));
  });

  test('panels do not overlap', () => {
    const boxes = list(dashboard['panels'], 'panels').map((p, i) => rec(at(p, 'gridPos'), `panels[${i}].gridPos`) as { x: number; y: number; w: number; h: number });
    boxes.forEach((a, i) =>
      boxes.slice(i + 1).forEach((b, j) => {
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        assert.ok(!overlap, `panels ${i} and ${i + 1 + j} overlap`);
      }),
    );
  });

  test('a datasource template variable drives every panel', () => {
    const vars = list(at(dashboard, 'templating.list'), 'templating.list').map((v, i) => rec(v, `templating.list[${i}]`));
    const ds = vars.find((v) => v['type'] === 'datasource');
    assert.ok(ds, 'a datasource variable');
    assert.equal(ds['query'], 'prometheus');
    const ref = `\${${str(ds['name'], 'variable name')}}`;
    for (const p of list(dashboard['panels'], 'panels')) {
      assert.equal(at(p, 'datasource.uid'), ref, `panel ${String(rec(p, 'panel')['title'])} uses ${ref}`);
    }
  });

  test('every metric in every query is a Weir metric', () => {
    for (const expr of dashboardExprs(dashboard)) {
      const names = metricNamesIn(expr);
      assert.ok(names.length > 0, `no metric found in ${expr}`);
      for (const n of names) assert.ok(isWeirSeriesName(n), `${n} (in ${expr}) is not a Weir metric`);
    }
  });
});

describe('deploy/prometheus', () => {
  test('alert rules: the five Weir alerts with severity and annotations', () => {
    const rules = alertRules();
    const byName = new Map(rules.map((r) => [r['alert'], r]));
    const expected: Record<string, { expr: string; for: string }> = {
      WeirConsumerLagHigh: { expr: 'sum(kafka_consumer_lag) > 10000', for: '5m' },
      WeirProcessingLatencyP99High: {
        expr: 'histogram_quantile(0.99, sum by (le) (rate(processing_latency_seconds_bucket[5m]))) > 1',
        for: '5m',
      },
      WeirErrorRateHigh: {
        expr: 'sum(rate(errors_total[5m])) / sum(rate(records_consumed_total[5m])) > 0.01',
        for: '5m',
      },
      WeirWatermarkStalled: {
        expr: 'delta(watermark_lag_seconds{partition="all"}[5m]) > 270 and on (instance) sum by (instance) (rate(records_consumed_total[5m])) > 0',
        for: '1m',
      },
      WeirStateSizeHigh: { expr: 'sum(state_size_bytes) > 10e9', for: '10m' },
    };
    assert.deepEqual([...byName.keys()].sort(), Object.keys(expected).sort());
    for (const [name, want] of Object.entries(expected)) {
      const rule = byName.get(name)!;
      assert.equal(rule['expr'], want.expr, `${name} expr`);
      assert.equal(rule['for'], want.for, `${name} for`);
      assert.equal(typeof at(rule, 'labels.severity'), 'string', `${name} severity`);
      assert.equal(typeof at(rule, 'annotations.summary'), 'string', `${name} summary`);
      assert.equal(typeof at(rule, 'annotations.description'), 'string', `${name} description`);
    }
    const groups = list(rec(parse(fs.readFileSync(path.join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8')), 'alerts')['groups'], 'groups');
    assert.deepEqual(groups.map((g) => rec(g, 'group')['name']), ['weir']);
  });

  test('every metric in every rule is a Weir metric', () => {
    for (const rule of alertRules()) {
      const expr = str(rule['expr'], `${String(rule['alert'])} expr`);
      const names = metricNamesIn(expr);
      assert.ok(names.length > 0, `no metric found in ${expr}`);
      for (const n of names) assert.ok(isWeirSeriesName(n), `${n} (in ${expr}) is not a Weir metric`);
    }
  });

  test('every alert has a firing and a silent promtool test case', () => {
    const tests = list(
      rec(parse(fs.readFileSync(path.join(DEPLOY, 'prometheus', 'alerts.test.yml'), 'utf8')), 'alerts.test.yml')['tests'],
      'tests',
    );
    const fires = new Set<string>();
    const silent = new Set<string>();
    for (const t of tests) {
      for (const c of list(rec(t, 'test')['alert_rule_test'] ?? [], 'alert_rule_test')) {
        const tc = rec(c, 'alert_rule_test case');
        const name = str(tc['alertname'], 'alertname');
        const expAlerts = list(tc['exp_alerts'] ?? [], 'exp_alerts');
        (expAlerts.length > 0 ? fires : silent).add(name);
      }
    }
    for (const rule of alertRules()) {
      const name = str(rule['alert'], 'alert');
      assert.ok(fires.has(name), `${name} has a case where it fires`);
      assert.ok(silent.has(name), `${name} has a case where it does not fire`);
    }
  });

  describe('promtool', { timeout: 10 * 60_000 }, () => {
    const hasPromtool = (): boolean => spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
    const ensurePromtool = (): void => {
      if (hasPromtool()) return;
      const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'ensure-prometheus.sh')], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 9 * 60_000,
      });
      assert.equal(r.status, 0, `scripts/ensure-prometheus.sh failed:\n${r.stdout}\n${r.stderr}`);
      assert.ok(hasPromtool(), 'promtool is on PATH after scripts/ensure-prometheus.sh');
    };
    const promtool = (...args: string[]): void => {
      ensurePromtool();
      const r = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, `promtool ${args.join(' ')} exited ${String(r.status)}:\n${r.stdout}\n${r.stderr}`);
    };

    test('promtool check rules deploy/prometheus/alerts.yml', () => {
      promtool('check', 'rules', path.join('deploy', 'prometheus', 'alerts.yml'));
    });

    test('promtool test rules deploy/prometheus/alerts.test.yml', () => {
      promtool('test', 'rules', path.join('deploy', 'prometheus', 'alerts.test.yml'));
    });
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = fs.readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
  // Instructions, with line continuations joined and comments dropped.
  const lines = dockerfile
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  test('builds on node:20-bookworm and runs on node:20-bookworm-slim', () => {
    const froms = lines.filter((l) => /^FROM\s/i.test(l));
    assert.equal(froms.length, 2, 'two stages');
    assert.match(froms[0]!, /^FROM\s+node:20-bookworm\s+AS\s+build$/i);
    assert.match(froms[1]!, /^FROM\s+node:20-bookworm-slim(\s+AS\s+\S+)?$/i);
    const buildStage = dockerfile.slice(0, dockerfile.indexOf(froms[1]!));
    for (const step of ['npm ci', 'npm run build', 'npm prune --omit=dev']) {
      assert.ok(buildStage.includes(step), `build stage runs ${step}`);
    }
  });

  test('runtime: non-root, /app, what bin/weir.js needs, port 9464, entrypoint', () => {
    const runtime = lines.slice(lines.findIndex((l) => /^FROM\s+node:20-bookworm-slim/i.test(l)));
    const user = runtime.find((l) => /^USER\s/i.test(l));
    assert.ok(user, 'a USER instruction');
    assert.doesNotMatch(user, /^USER\s+(root|0)(:|$)/i, 'not root');
    assert.ok(runtime.includes('WORKDIR /app'));
    const copies = runtime.filter((l) => /^COPY\s+--from=build\b/i.test(l));
    for (const what of ['dist', 'build', 'bin', 'node_modules', 'package.json', 'examples']) {
      assert.ok(
        copies.some((c) => new RegExp(`\\s/src/${what.replace('.', '\\.')}\\s`).test(c)),
        `runtime copies ${what} from the build stage`,
      );
    }
    assert.ok(runtime.some((l) => /^EXPOSE\s+9464\b/.test(l)), 'EXPOSE 9464');
    assert.ok(runtime.includes('ENTRYPOINT ["node", "bin/weir.js"]'));
    assert.ok(runtime.includes('CMD ["run", "--config", "/etc/weir/config.yaml"]'));
  });
});

describe('deploy/Dockerfile: the docker run example of deploy/README.md', () => {
  const dockerfile = fs.readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\r?\n/g, ' ');
  const runtime = dockerfile.slice(dockerfile.search(/^FROM\s+node:20-bookworm-slim/im));
  const readme = fs.readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');

  test('every file the example config writes is in a directory the image user owns', () => {
    // `docker run ... -v "$PWD/examples:/etc/weir:ro" weir:dev run --config /etc/weir/weir.yaml`
    const run = /^docker run .*--config (\/etc\/weir\/\S+)$/m.exec(readme);
    assert.ok(run, 'deploy/README.md has a docker run line');
    assert.match(run[0], /-v "\$PWD\/examples:\/etc\/weir:ro"/);
    const cfg = validateConfig(parse(fs.readFileSync(path.join(ROOT, 'examples', path.basename(run[1]!)), 'utf8')), 'examples config');
    const workdir = [...runtime.matchAll(/^WORKDIR\s+(\S+)/gm)].at(-1)![1]!;
    const owned = [...runtime.matchAll(/chown\s+(?:-R\s+)?weir:weir\s+([^&\n]+)/g)].flatMap((m) => m[1]!.trim().split(/\s+/));
    assert.ok(/^USER\s+\$\{WEIR_UID\}/m.test(runtime), 'runs as the weir uid');
    const writes: string[] = [];
    if (cfg.deadLetter.type === 'file') writes.push(cfg.deadLetter.path);
    for (const s of cfg.sinks) if (s.type === 'file') writes.push(s.path);
    if (cfg.state.backend === 'rocksdb') writes.push(path.join(cfg.state.dir, 'x'));
    assert.ok(writes.length > 0);
    for (const w of writes) {
      const abs = path.posix.resolve(workdir, w);
      assert.ok(owned.some((d) => abs.startsWith(`${d.replace(/\/$/, '')}/`)), `${w} (${abs}) is not under a directory chowned to weir (${owned.join(', ')})`);
    }
  });
});
