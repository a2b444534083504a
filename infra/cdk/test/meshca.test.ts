// The synthesised template, asserted: least privilege, triggers, retries and dead letters,
// alarms, and cdk-nag's AwsSolutions pack with no unacknowledged finding.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as cdk from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DIRECT_SETTINGS, MeshcaStack, MeshcaProps, FAILURES_QUERY, PATHLEN0_TEMPLATE, PER_CLUSTER_QUERY, SETTINGS, propsFromContext } from '../lib/meshca-stack';
import { MeshcaMemberStack, MeshcaMemberProps } from '../lib/meshca-member-stack';

const CA = 'arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/11111111-2222-3333-4444-555555555555';
const TEMPLATE_ARN = `arn:aws:acm-pca:::${PATHLEN0_TEMPLATE}`;

/** Every action meshca may be granted; the functions call exactly these. */
const ALLOWED = new Set([
  'acm-pca:IssueCertificate', 'acm-pca:GetCertificate', 'acm-pca:DescribeCertificateAuthority',
  'acm-pca:GetCertificateAuthorityCertificate', 'acm-pca:RevokeCertificate',
  'secretsmanager:CreateSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue',
  'secretsmanager:UpdateSecretVersionStage', 'secretsmanager:DeleteSecret', 'secretsmanager:TagResource',
  'secretsmanager:UntagResource', 'secretsmanager:DescribeSecret',
  'eks:DescribeCluster', 'eks:ListClusters', 'events:PutEvents', 'kms:GenerateDataKey', 'kms:Decrypt',
  'logs:CreateLogStream', 'logs:PutLogEvents', 'sts:AssumeRole', 'tag:GetResources', 'secretsmanager:ListSecrets',
  'sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes',
]);
/** Actions AWS offers no resource-level permission for: the only ones that may use "*". */
const UNSCOPABLE = new Set(['eks:ListClusters', 'tag:GetResources', 'secretsmanager:ListSecrets']);

function stackOf(extra: Partial<MeshcaProps> = {}): { app: cdk.App; stack: MeshcaStack } {
  const app = new cdk.App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new MeshcaStack(app, 'Meshca', {
    caArn: CA,
    regions: ['eu-west-1', 'us-east-1'],
    env: { account: '111122223333', region: 'eu-west-1' },
    ...extra,
  });
  return { app, stack };
}

function synth(extra: Partial<MeshcaProps> = {}): { stack: MeshcaStack; template: Template } {
  const { stack } = stackOf(extra);
  return { stack, template: Template.fromStack(stack) };
}

/** AwsSolutions findings that were not acknowledged, as cdk synth would print them. */
function nagFindings(app: cdk.App): string[] {
  const report = new AwsSolutionsChecks(app).validateScope(app);
  return report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`);
}

type Statement = { Sid?: string; Action: string | string[]; Resource: unknown; Condition?: Record<string, Record<string, unknown>> };

function statements(template: Template): Statement[] {
  return Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
}
const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const resourcesOf = (s: Statement) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]);

test('IssueCertificate is granted on the configured CA only, and only with the PathLen0 template', () => {
  const { template } = synth();
  const issue = statements(template).filter((s) => actionsOf(s).includes('acm-pca:IssueCertificate'));
  assert.equal(issue.length, 1, 'one statement grants IssueCertificate');
  assert.deepEqual(actionsOf(issue[0]), ['acm-pca:IssueCertificate'], 'and nothing else, so the condition cannot be sidestepped');
  assert.deepEqual(issue[0].Condition, { StringEquals: { 'acm-pca:TemplateArn': TEMPLATE_ARN } });
  assert.deepEqual(resourcesOf(issue[0]), [CA]);
});

test('no statement allows "*" where a narrower grant exists, and no action is outside what meshca calls', () => {
  const { template } = synth();
  for (const s of statements(template)) {
    for (const a of actionsOf(s)) {
      assert.ok(!a.includes('*'), `wildcard action ${a}`);
      assert.ok(ALLOWED.has(a), `unexpected action ${a}`);
      if (resourcesOf(s).includes('*')) assert.ok(UNSCOPABLE.has(a), `${a} is granted on "*" but can be scoped`);
    }
    const text = JSON.stringify(s.Resource);
    // ListSecrets alone has no resource type; it reveals names and tags, never a value.
    if (actionsOf(s).some((a) => a.startsWith('secretsmanager:') && a !== 'secretsmanager:ListSecrets')) {
      assert.match(text, /secret:meshca\/eu-west-1\/\*/);
      assert.match(text, /secret:meshca\/us-east-1\/\*/);
      assert.doesNotMatch(text, /secret:\*/);
    }
    if (actionsOf(s).includes('events:PutEvents')) assert.match(text, /ReconcileBus/, 'PutEvents on the fan-out bus only');
    if (actionsOf(s).some((a) => a.startsWith('kms:'))) {
      assert.match(text, /EscrowKey/, 'KMS on its own key only');
      // Through Secrets Manager (escrow) or SQS (the work queue), never directly.
      const via = String(s.Condition?.StringEquals?.['kms:ViaService']);
      assert.ok(['secretsmanager.eu-west-1.amazonaws.com', 'sqs.eu-west-1.amazonaws.com'].includes(via), JSON.stringify(s.Condition));
    }
    if (actionsOf(s).some((a) => a.startsWith('sqs:'))) assert.match(text, /WorkQueue/, 'the work queue only');
  }
  // The role carries no managed policy (AWSLambdaBasicExecutionRole would allow logs on "*").
  template.hasResourceProperties('AWS::IAM::Role', { ManagedPolicyArns: Match.absent() });
});

test('functions: arm64 on provided.al2023, configured from props, logs retained', () => {
  const { template } = synth({ validityDays: 90, renewBeforeDays: 30, tagKey: 'mesh', tagValue: 'istio' });
  const fns = template.findResources('AWS::Lambda::Function');
  assert.equal(Object.keys(fns).length, 3);
  for (const f of Object.values(fns)) {
    assert.deepEqual(f.Properties.Architectures, ['arm64']);
    assert.equal(f.Properties.Runtime, 'provided.al2023');
    assert.equal(f.Properties.Timeout, 900);
    const env = f.Properties.Environment.Variables;
    assert.equal(env.MESHCA_CA_ARN, CA);
    assert.equal(env.MESHCA_TEMPLATE_ARN, TEMPLATE_ARN);
    assert.equal(env.MESHCA_REGIONS, 'eu-west-1,us-east-1');
    assert.equal(env.MESHCA_VALIDITY_DAYS, '90');
    assert.equal(env.MESHCA_RENEW_BEFORE_DAYS, '30');
    assert.equal(env.MESHCA_TAG_KEY, 'mesh');
    assert.equal(env.MESHCA_TAG_VALUE, 'istio');
  }
  template.resourceCountIs('AWS::Logs::LogGroup', 3);
  template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 365, KmsKeyId: Match.anyValue() });
  template.allResourcesProperties('AWS::SQS::Queue', { KmsMasterKeyId: Match.anyValue() });
  template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
});

test('triggers: CloudTrail create/delete, reconcile requests on the meshca bus, revoke requests, an hourly sweep; each retried into a DLQ', () => {
  const { template } = synth();
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: {
      source: ['aws.eks'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: { eventSource: ['eks.amazonaws.com'], eventName: ['CreateCluster', 'DeleteCluster'] },
    },
  });
  template.hasResourceProperties('AWS::Events::Rule', {
    EventBusName: Match.anyValue(),
    EventPattern: { source: ['meshca'], 'detail-type': ['meshca Reconcile Requested'] },
  });
  template.hasResourceProperties('AWS::Events::Rule', { EventPattern: { source: ['meshca'], 'detail-type': ['meshca Revoke Requested'] } });
  template.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(1 hour)' });
  const rules = Object.values(template.findResources('AWS::Events::Rule'));
  assert.equal(rules.length, 4);
  for (const r of rules) {
    for (const t of r.Properties.Targets) {
      assert.ok(t.DeadLetterConfig?.Arn, 'every target dead-letters');
      assert.ok(t.RetryPolicy?.MaximumRetryAttempts >= 2, 'and retries first');
    }
  }
});

test('alarms: function errors, dead letters, soonest days left, a sweep that stopped running, a stuck root rotation', () => {
  const { template } = synth({ alarmDaysLeft: 10, rotationStuckAfterHours: 48 });
  // Errors of 3 functions, 3 dead-letter queues (cluster-events, sweep, work queue), clusters
  // the sweep failed, days left, a sweep that stopped running, a stuck rotation.
  template.resourceCountIs('AWS::CloudWatch::Alarm', 10);
  template.hasResourceProperties('AWS::CloudWatch::Alarm', {
    Namespace: 'meshca', MetricName: 'ClustersFailed', Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
  });
  template.hasResourceProperties('AWS::CloudWatch::Alarm', {
    Namespace: 'meshca', MetricName: 'RotationPhaseAgeSeconds', Statistic: 'Maximum', Threshold: 48 * 3600,
    ComparisonOperator: 'GreaterThanThreshold', TreatMissingData: 'notBreaching',
  });
  template.hasResourceProperties('AWS::CloudWatch::Alarm', {
    Namespace: 'meshca', MetricName: 'SoonestDaysLeft', Threshold: 10, ComparisonOperator: 'LessThanThreshold',
  });
  template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateNumberOfMessagesVisible' });
  template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'Invocations', TreatMissingData: 'breaching' });
  for (const a of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) {
    assert.equal(a.Properties.AlarmActions.length, 1, 'each alarm notifies the topic');
  }
});

test('a root rotation between Private CAs: the new CA gets the same PathLen0-only grant, nothing more', () => {
  const NEW = 'arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/99999999-2222-3333-4444-555555555555';
  const { template } = synth({ rotationCaArns: [NEW] });
  const pca = statements(template).filter((s) => actionsOf(s).some((a) => a.startsWith('acm-pca:')));
  assert.equal(pca.length, 2);
  for (const s of pca) assert.deepEqual(resourcesOf(s), [CA, NEW]);
  const issue = pca.find((s) => actionsOf(s).includes('acm-pca:IssueCertificate'))!;
  assert.deepEqual(issue.Condition, { StringEquals: { 'acm-pca:TemplateArn': TEMPLATE_ARN } });
  assert.throws(() => synth({ rotationCaArns: ['arn:aws:s3:::bucket'] }), /rotationCaArns: .* is not an acm-pca/);
  const ctx = new cdk.App({ context: { 'meshca:caArn': CA, 'meshca:rotationCaArns': `${NEW}, ` } });
  assert.deepEqual(propsFromContext(ctx).rotationCaArns, [NEW]);
});

test('cdk-nag AwsSolutions: no finding without a justified acknowledgement', () => {
  assert.deepEqual(nagFindings(stackOf().app), []);
});

test('cdk-nag reports an unjustified wildcard (so the check above can fail)', () => {
  const { app, stack } = stackOf();
  // (A new Resource::* would pass cdk-nag: the acknowledgement for eks:ListClusters covers it.
  // The least-privilege test above is what catches that.)
  stack.role.addToPolicy(new cdk.aws_iam.PolicyStatement({
    actions: ['secretsmanager:*'],
    resources: ['arn:aws:secretsmanager:eu-west-1:111122223333:secret:other/*'],
  }));
  const findings = nagFindings(app);
  assert.ok(findings.some((f) => f.includes('AwsSolutions-IAM5')), findings.join('\n'));
});

const SECRET_ID = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:meshca/vault-secret-id-AbCdEf';

test('a Vault stack grants no Private CA permission and reads only the AppRole secret id', () => {
  const { app, stack } = stackOf({ caArn: undefined, vault: { addr: 'https://vault.example:8200', roleId: 'meshca', secretIdArn: SECRET_ID } });
  const template = Template.fromStack(stack);
  const all = statements(template);
  assert.ok(all.every((s) => actionsOf(s).every((a) => !a.startsWith('acm-pca:'))), 'no acm-pca action at all');
  const reads = all.filter((s) => JSON.stringify(s.Resource).includes('vault-secret-id'));
  assert.equal(reads.length, 1);
  assert.deepEqual(actionsOf(reads[0]), ['secretsmanager:GetSecretValue']);
  assert.deepEqual(resourcesOf(reads[0]), [SECRET_ID]);
  for (const s of all) for (const a of actionsOf(s)) assert.ok(ALLOWED.has(a), `unexpected action ${a}`);
  template.hasResourceProperties('AWS::Lambda::Function', {
    Environment: { Variables: Match.objectLike({ MESHCA_AUTHORITY: 'vault', MESHCA_VAULT_ADDR: 'https://vault.example:8200', MESHCA_VAULT_MOUNT: 'pki',
      MESHCA_VAULT_AUTH: 'approle', MESHCA_VAULT_ROLE_ID: 'meshca', MESHCA_VAULT_SECRET_ID_ARN: SECRET_ID, MESHCA_CA_ARN: Match.absent() }) },
  });
  assert.deepEqual(nagFindings(app), []);
  // The AWS IAM login needs no AWS permission beyond what meshca already has.
  const iamLogin = synth({ caArn: undefined, vault: { addr: 'https://vault.example:8200', awsRole: 'meshca' } }).template;
  assert.ok(statements(iamLogin).every((s) => !JSON.stringify(s).includes('acm-pca') && !JSON.stringify(s.Resource).includes('vault-secret-id')));
});

const XCP_CA = 'arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/99999999-8888-7777-6666-555555555555';

test('XCP identities: the end-entity template on their CA only, and nothing of it without them', () => {
  const issue = (t: Template) => statements(t).filter((s) => actionsOf(s).includes('acm-pca:IssueCertificate'));
  // Without xcpIdentities the role cannot issue an end-entity certificate anywhere.
  assert.ok(issue(synth().template).every((s) => !JSON.stringify(s.Condition).includes('EndEntityCertificate')));
  // From the intermediates' CA: a second statement, same CA, the end-entity template only.
  const same = issue(synth({ xcpIdentities: true }).template);
  assert.equal(same.length, 2);
  const xcp = same.find((s) => JSON.stringify(s.Condition).includes('EndEntityCertificate'))!;
  assert.deepEqual(xcp.Condition, { StringEquals: { 'acm-pca:TemplateArn': 'arn:aws:acm-pca:::template/EndEntityCertificate/V1' } });
  assert.deepEqual(resourcesOf(xcp), [CA]);
  assert.deepEqual(actionsOf(xcp), ['acm-pca:IssueCertificate']);
  // From their own CA: issuing, reading and revoking there, PathLen0 still on the main CA only.
  const { app, stack } = stackOf({ xcpIdentities: true, xcpCaArn: XCP_CA });
  const t = Template.fromStack(stack);
  const own = issue(t);
  assert.deepEqual(own.map((s) => resourcesOf(s)[0]).sort(), [CA, XCP_CA].sort());
  assert.deepEqual(resourcesOf(own.find((s) => JSON.stringify(s.Condition).includes('PathLen0'))!), [CA]);
  assert.ok(statements(t).some((s) => actionsOf(s).includes('acm-pca:RevokeCertificate') && resourcesOf(s).includes(XCP_CA)));
  t.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ MESHCA_XCP_CA_ARN: XCP_CA }) } });
  assert.deepEqual(nagFindings(app), []);
  assert.throws(() => synth({ xcpCaArn: XCP_CA }), /xcpIdentities is not true/);
  assert.throws(() => synth({ caArn: undefined, vault: { addr: 'https://v:8200', awsRole: 'r' }, xcpIdentities: true }), /need a Private CA/);
});

test('fan-out: a work queue with a dead-letter queue, consumed by renewal-worker at a bounded concurrency, each worker at its share', () => {
  const { template } = synth({ workerConcurrency: 5, sweepEvery: cdk.Duration.hours(6) });
  template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
    BatchSize: 10,
    ScalingConfig: { MaximumConcurrency: 5 },
    FunctionResponseTypes: ['ReportBatchItemFailures'],
  });
  template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 5400, RedrivePolicy: { maxReceiveCount: 3, deadLetterTargetArn: Match.anyValue() } });
  const fns = Object.values(template.findResources('AWS::Lambda::Function')).map((f) => f.Properties.Environment.Variables);
  const worker = fns.filter((env) => env.MESHCA_WORKER_CONCURRENCY);
  assert.equal(worker.length, 1);
  assert.equal(worker[0].MESHCA_WORKER_CONCURRENCY, '5');
  for (const env of fns) {
    assert.ok(env.MESHCA_WORK_QUEUE_URL, 'the sweep fans out onto the queue');
    // A six-hourly sweep reads each healthy cluster back every fourth run: once a day.
    assert.deepEqual([env.MESHCA_SWEEP_MINUTES, env.MESHCA_VERIFY_EVERY], ['360', '4']);
  }
  assert.throws(() => synth({ workerConcurrency: 1 }), /workerConcurrency must be an integer in 2..1000/);
});

test('bad props are refused with the reason', () => {
  assert.throws(() => synth({ vault: { addr: 'https://v:8200', awsRole: 'r' } }), /exactly one authority/);
  assert.throws(() => synth({ caArn: undefined }), /exactly one authority/);
  assert.throws(() => synth({ caArn: undefined, vault: { addr: 'v:8200', awsRole: 'r' } }), /not an http\(s\) URL/);
  assert.throws(() => synth({ caArn: undefined, vault: { addr: 'https://v:8200', roleId: 'r' } }), /AppRole needs both/);
  assert.throws(() => synth({ caArn: undefined, vault: { addr: 'https://v:8200', roleId: 'r', secretIdArn: SECRET_ID, awsRole: 'x' } }), /either roleId/);
  assert.throws(() => synth({ caArn: 'arn:aws:s3:::bucket' }), /not an acm-pca certificate-authority ARN/);
  assert.throws(() => synth({ validityDays: 30, renewBeforeDays: 30 }), /renewBeforeDays \(30\) must be below validityDays \(30\)/);
  const app = new cdk.App({ context: { 'meshca:regions': 'eu-west-1' } });
  assert.throws(() => propsFromContext(app), /meshca:caArn is required/);
  const bad = new cdk.App({ context: { 'meshca:caArn': CA, 'meshca:validityDays': 'a year' } });
  assert.throws(() => propsFromContext(bad), /meshca:validityDays/);
});

const M1 = '222233334444';

/** A CloudFormation value as it reads once deployed in the aws partition of eu-west-1. */
function flat(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(flat);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if ('Fn::Join' in o) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map((p) => String(flat(p))).join(sep);
    }
    if (o.Ref === 'AWS::Partition') return 'aws';
    if (o.Ref === 'AWS::Region') return 'eu-west-1';
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, flat(x)]));
  }
  return v;
}
const M2 = '333344445555';

test('member accounts: the role assumes their member roles only, escrows under meshca/<account>/<region>, and only they may forward events', () => {
  const { app, stack } = stackOf({ memberAccounts: [{ account: M1, externalId: 'x-1' }, { account: M2, regions: ['ap-south-1'], roleName: 'platform-meshca' }] });
  const template = Template.fromStack(stack);
  const assume = statements(template).filter((s) => actionsOf(s).includes('sts:AssumeRole'));
  assert.equal(assume.length, 1);
  assert.deepEqual(actionsOf(assume[0]), ['sts:AssumeRole']);
  assert.deepEqual(flat(resourcesOf(assume[0])), [`arn:aws:iam::${M1}:role/meshca-member`, `arn:aws:iam::${M2}:role/platform-meshca`]);
  const escrow = statements(template).find((s) => s.Sid === 'EscrowUnderTheMeshcaPrefix')!;
  const secrets = JSON.stringify(flat(escrow.Resource));
  for (const prefix of [`meshca/${M1}/eu-west-1/*`, `meshca/${M1}/us-east-1/*`, `meshca/${M2}/ap-south-1/*`]) assert.ok(secrets.includes(prefix), prefix);
  assert.ok(!secrets.includes(`meshca/${M2}/eu-west-1`), 'a member\'s records only in its own regions');
  const busPolicies = Object.values(template.findResources('AWS::Events::EventBusPolicy')).map((r) => flat(r.Properties));
  assert.deepEqual(busPolicies, [{
    EventBusName: 'default',
    StatementId: 'MeshcaMemberAccountsForwardEksEvents',
    Statement: { Effect: 'Allow', Action: 'events:PutEvents', Principal: { AWS: [`arn:aws:iam::${M1}:root`, `arn:aws:iam::${M2}:root`] },
      Resource: 'arn:aws:events:eu-west-1:111122223333:event-bus/default' },
  }]);
  template.hasResourceProperties('AWS::Events::Rule', { EventPattern: Match.objectLike({ account: ['111122223333', M1, M2], source: ['aws.eks'] }) });
  const env = Object.values(template.findResources('AWS::Lambda::Function'))[0].Properties.Environment.Variables;
  assert.deepEqual(JSON.parse(flat(env.MESHCA_ACCOUNTS) as string), [
    { account: M1, role: `arn:aws:iam::${M1}:role/meshca-member`, regions: ['eu-west-1', 'us-east-1'], externalId: 'x-1' },
    { account: M2, role: `arn:aws:iam::${M2}:role/platform-meshca`, regions: ['ap-south-1'] },
  ]);
  assert.deepEqual(nagFindings(app), []);
  // Without members: no AssumeRole, no bus policy, no account filter, no MESHCA_ACCOUNTS.
  const alone = synth().template;
  assert.ok(statements(alone).every((s) => !actionsOf(s).includes('sts:AssumeRole')));
  alone.resourceCountIs('AWS::Events::EventBusPolicy', 0);
  // An organisation instead of the account list on the bus; the functions still act for listed accounts only.
  const org = synth({ memberAccounts: [{ account: M1 }], organizationId: 'o-abcdef1234' }).template;
  org.hasResourceProperties('AWS::Events::EventBusPolicy', { Statement: { Principal: '*', Condition: { StringEquals: { 'aws:PrincipalOrgID': 'o-abcdef1234' } } } });
  assert.throws(() => synth({ memberAccounts: [{ account: '2222' }] }), /not a 12-digit account id/);
  assert.throws(() => synth({ memberAccounts: [{ account: M1 }, { account: M1 }] }), /listed twice/);
  assert.throws(() => synth({ organizationId: 'o-abcdef1234' }), /needs memberAccounts/);
  assert.throws(() => synth({ memberAccounts: [{ account: M1 }], organizationId: 'org' }), /not an AWS Organizations id/);
  const ctx = new cdk.App({ context: { 'meshca:caArn': CA, 'meshca:memberAccounts': `${M1}, ${M2}` } });
  assert.deepEqual(propsFromContext(ctx).memberAccounts, [{ account: M1 }, { account: M2 }]);
});

test('a dashboard shows each cluster from the logs (Logs Insights) and graphs only fleet totals', () => {
  const { template } = synth();
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  assert.equal(dashboards.length, 1);
  const body = JSON.parse(flat(dashboards[0].Properties.DashboardBody) as string);
  const logs = body.widgets.filter((w: { type: string }) => w.type === 'log');
  assert.equal(logs.length, 2);
  const groups = Object.keys(template.findResources('AWS::Logs::LogGroup')).length;
  for (const w of logs) {
    assert.equal((w.properties.query.match(/SOURCE '/g) ?? []).length, groups, w.properties.query);
  }
  for (const line of [...PER_CLUSTER_QUERY, ...FAILURES_QUERY]) {
    assert.ok(logs.some((w: { properties: { query: string } }) => w.properties.query.includes(line)), line);
  }
  const text = JSON.stringify(body);
  assert.ok(!text.includes('SEARCH(') && !text.includes('"Cluster"'), 'a per-cluster metric is a billed series per cluster');
  for (const metric of ['Renewals', 'Failures', 'IssueThrottled', 'SoonestDaysLeft', 'ClustersFailed']) assert.ok(text.includes(metric), metric);
});

const CENTRAL_ROLE = 'arn:aws:iam::111122223333:role/Meshca-Role1ABCD';
const CENTRAL_BUS = 'arn:aws:events:eu-west-1:111122223333:event-bus/default';

function member(extra: Partial<MeshcaMemberProps> = {}): { app: cdk.App; template: Template } {
  const app = new cdk.App();
  const stack = new MeshcaMemberStack(app, 'MeshcaMember', {
    centralRoleArn: CENTRAL_ROLE, centralBusArn: CENTRAL_BUS, env: { account: M1, region: 'eu-west-1' }, ...extra,
  });
  return { app, template: Template.fromStack(stack) };
}

test('member stack: a role only the central function role may assume, for EKS reads only; EKS events forwarded to the central bus', () => {
  const { app, template } = member({ externalId: 'x-1' });
  template.hasResourceProperties('AWS::IAM::Role', {
    RoleName: 'meshca-member',
    MaxSessionDuration: 3600,
    AssumeRolePolicyDocument: { Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { AWS: CENTRAL_ROLE }, Condition: { StringEquals: { 'sts:ExternalId': 'x-1' } } }] },
  });
  const granted = statements(template).flatMap((s) => actionsOf(s));
  // The events role may put onto the central bus; the member role reads EKS and nothing else.
  assert.deepEqual(granted.sort(), ['eks:DescribeCluster', 'eks:ListClusters', 'events:PutEvents', 'tag:GetResources']);
  const put = statements(template).find((s) => actionsOf(s).includes('events:PutEvents'))!;
  assert.deepEqual(resourcesOf(put), [CENTRAL_BUS]);
  const describe = statements(template).find((s) => actionsOf(s).includes('eks:DescribeCluster'))!;
  assert.deepEqual(resourcesOf(describe), [{ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:eks:*:${M1}:cluster/*`]] }]);
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: { source: ['aws.eks'], 'detail-type': ['AWS API Call via CloudTrail'], detail: { eventSource: ['eks.amazonaws.com'], eventName: ['CreateCluster', 'DeleteCluster'] } },
    Targets: [Match.objectLike({ Arn: CENTRAL_BUS })],
  });
  assert.deepEqual(nagFindings(app), []);
  // In the other regions of a StackSet: the rule alone.
  const ruleOnly = member({ createRole: false }).template;
  ruleOnly.resourcePropertiesCountIs('AWS::IAM::Role', { RoleName: 'meshca-member' }, 0);
  ruleOnly.resourceCountIs('AWS::Events::Rule', 1);
  assert.throws(() => member({ centralRoleArn: 'arn:aws:iam::111122223333:user/x' }), /not an IAM role ARN/);
  assert.throws(() => member({ centralBusArn: 'arn:aws:sqs:eu-west-1:111122223333:q' }), /not an event bus ARN/);
});

test('a CA in a security account reached through a role there: that role alone may be assumed for it', () => {
  const SECURITY_CA = 'arn:aws:acm-pca:eu-west-1:999988887777:certificate-authority/11111111-2222-3333-4444-555555555555';
  const ROLE = 'arn:aws:iam::999988887777:role/meshca-issuer';
  const { app, stack } = stackOf({ caArn: SECURITY_CA, caRoleArn: ROLE, caExternalId: 'pca' });
  const template = Template.fromStack(stack);
  const assume = statements(template).filter((s) => actionsOf(s).includes('sts:AssumeRole'));
  assert.deepEqual(assume.map((s) => [s.Sid, resourcesOf(s)]), [['AssumeTheCaAccountRoleOnly', [ROLE]]]);
  template.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ MESHCA_CA_ROLE_ARN: ROLE, MESHCA_CA_EXTERNAL_ID: 'pca' }) } });
  assert.deepEqual(nagFindings(app), []);
  assert.throws(() => synth({ caArn: SECURITY_CA, caRoleArn: 'arn:aws:iam::111122223333:role/meshca-issuer' }), /not a role of the CA's account 999988887777/);
  assert.throws(() => synth({ caArn: SECURITY_CA, caRoleArn: 'arn:aws:iam::999988887777:user/x' }), /not an IAM role ARN/);
});

/** The repository root, seen from build/test. */
const ROOT = path.join(__dirname, '..', '..', '..', '..');

test('every alarm names its runbook page, and the page says what it means, where to look and how to redrive', () => {
  const { template } = synth();
  const pages = new Set<string>();
  for (const a of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) {
    const m = /Runbook: (docs\/alarms\/[a-z-]+\.md)$/.exec(a.Properties.AlarmDescription);
    assert.ok(m, `alarm without a runbook: ${a.Properties.AlarmDescription}`);
    pages.add(m[1]);
  }
  for (const page of pages) {
    const text = fs.readFileSync(path.join(ROOT, page), 'utf8');
    for (const heading of ['## What it means', '## Where to look', '## What to do']) assert.ok(text.includes(heading), `${page} lacks "${heading}"`);
  }
  assert.equal(pages.size, 6);
});

test('outputs: every function, its log group, every dead-letter queue, the work queue and the dashboard', () => {
  const { template } = synth();
  const outputs = Object.keys(template.toJSON().Outputs);
  for (const name of ['ClusterEvents', 'ExpirySweep', 'RenewalWorker']) {
    for (const o of [`${name}Function`, `${name}LogGroup`, `${name}DeadLetterQueueUrl`]) assert.ok(outputs.includes(o), `no output ${o}`);
  }
  for (const o of ['WorkQueueUrl', 'DashboardName', 'AlarmTopicArn', 'RoleArn', 'GrantClusterAccess']) assert.ok(outputs.includes(o), `no output ${o}`);
});

test('every direct setting reaches its variable, from a prop and from context alike', () => {
  const example = (s: (typeof DIRECT_SETTINGS)[number]) => s.example!;
  const context: Record<string, string> = { 'aws:cdk:bundling-stacks': [] as unknown as string, 'meshca:caArn': CA };
  for (const s of DIRECT_SETTINGS) context[`meshca:${s.cdk}`] = example(s);
  const app = new cdk.App({ context });
  const fromContext = new MeshcaStack(app, 'FromContext', { ...propsFromContext(app), env: { account: '111122223333', region: 'eu-west-1' } });
  const props: Record<string, unknown> = {};
  for (const s of DIRECT_SETTINGS) props[s.cdk!] = propsFromContext(app)[s.cdk as keyof MeshcaProps];
  const fromProps = stackOf(props as Partial<MeshcaProps>).stack;
  for (const stack of [fromContext, fromProps]) {
    for (const f of Object.values(Template.fromStack(stack).findResources('AWS::Lambda::Function'))) {
      const env = f.Properties.Environment.Variables;
      for (const s of DIRECT_SETTINGS) assert.equal(env[s.env], example(s), `${stack.stackName}: ${s.cdk} does not reach ${s.env}`);
    }
  }
  // Nothing given: the functions' own defaults apply, and the variables stay unset.
  const env = Object.values(synth().template.findResources('AWS::Lambda::Function'))[0].Properties.Environment.Variables;
  for (const s of DIRECT_SETTINGS) assert.equal(env[s.env], undefined, `${s.env} is set though nobody asked`);
  assert.throws(() => stackOf({ restartIstiod: 'sometimes' }), /restartIstiod \(MESHCA_RESTART_ISTIOD\): "sometimes" is not one of auto, always, never/);
  assert.throws(() => stackOf({ adopt: 'yes' as unknown as boolean }), /adopt \(MESHCA_ADOPT\): "yes" is not true or false/);
});

test('every variable a deployment sets is in the settings list, and every setting with a CDK name is reachable', () => {
  const listed = new Set(SETTINGS.map((s) => s.env));
  const vault = stackOf({ caArn: undefined, vault: { addr: 'https://v:8200', issuer: 'cluster-cas', namespace: 'platform', awsRole: 'meshca', awsStsRegion: 'eu-west-1', awsServerId: 'vault.example', authMount: 'aws2', caCertPem: 'PEM' } }).stack;
  const member = stackOf({ memberAccounts: [{ account: '222233334444' }], secretPrefix: 'mesh/prod', renewBeforeDays: 30, xcpIdentities: true, xcpCaArn: CA.replace('1111-2222', '9999-2222'), caRoleArn: 'arn:aws:iam::111122223333:role/ca', securityAccount: '444455556666', crlMode: true, crlBuckets: ['meshca-crls'], rootCrls: ['s3://meshca-crls/offline/root.crl'] }).stack;
  const seen = new Set<string>();
  for (const stack of [vault, member]) {
    for (const f of Object.values(Template.fromStack(stack).findResources('AWS::Lambda::Function'))) {
      for (const v of Object.keys(f.Properties.Environment.Variables)) {
        assert.ok(listed.has(v), `${v} is set by the stack but not in lib/settings.json`);
        seen.add(v);
      }
    }
  }
  const reachable = SETTINGS.filter((s) => s.mapping !== 'direct' && s.cdk !== null || s.mapping === 'deployment').map((s) => s.env);
  for (const v of reachable) {
    if (['MESHCA_VAULT_ROLE_ID', 'MESHCA_VAULT_SECRET_ID_ARN', 'MESHCA_AUTHORITY'].includes(v)) continue; // AppRole: the Vault test above
    assert.ok(seen.has(v), `${v}: no configuration of the stack sets it`);
  }
});

test('CRL mode reads the named CRL buckets only, alarms on a lapsing CRL, and refuses what cannot work', () => {
  const { template } = synth({ crlMode: true, crlBuckets: ['meshca-crls', 'root-crls'], rootCrls: ['s3://root-crls/offline/root.crl'] });
  const read = statements(template).filter((s) => JSON.stringify(s.Action).includes('s3:'));
  assert.deepEqual(read.map((s) => [s.Sid, s.Action]), [['ReadTheCaCrlsOnly', 's3:GetObject']]);
  const audit = statements(template).filter((s) => JSON.stringify(s.Action).includes('AuditReport'));
  assert.deepEqual(audit.map((s) => [s.Sid, s.Action, s.Resource]), [['ListWhatTheCaIssuedByAuditReport', ['acm-pca:CreateCertificateAuthorityAuditReport', 'acm-pca:DescribeCertificateAuthorityAuditReport'], CA]]);
  assert.ok(!JSON.stringify(statements(synth({}).template)).includes('AuditReport'), 'audit reports are read in CRL mode only');
  assert.deepEqual(resourcesOf(read[0]).map((r: unknown) => JSON.stringify(r)), ['meshca-crls', 'root-crls'].map((b) => JSON.stringify({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:s3:::${b}/*`]] })));
  const env = Object.values(template.findResources('AWS::Lambda::Function'))[0].Properties.Environment.Variables;
  assert.equal(env.MESHCA_CRL_MODE, 'true');
  assert.equal(env.MESHCA_CRL_BUCKETS, 'meshca-crls,root-crls');
  assert.equal(env.MESHCA_ROOT_CRLS, 's3://root-crls/offline/root.crl');
  assert.throws(() => stackOf({ crlMode: true, crlBuckets: ['meshca-crls'], rootCrls: ['s3://elsewhere/root.crl'] }), /not s3:\/\/BUCKET\/KEY in a bucket of crlBuckets/);
  const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
  const days = alarms.find((a) => a.MetricName === 'CrlDaysLeft')!;
  assert.equal(days.Threshold, 2);
  assert.equal(days.TreatMissingData, 'breaching');
  assert.match(days.AlarmDescription, /docs\/alarms\/crl-days-left\.md/);
  assert.ok(alarms.some((a) => a.MetricName === 'CrlFailures'));
  // Off (the default): no S3 read, no CRL alarm.
  const off = synth({}).template;
  assert.ok(!statements(off).some((s) => JSON.stringify(s.Action).includes('s3:')));
  assert.ok(!Object.values(off.findResources('AWS::CloudWatch::Alarm')).some((a) => String(a.Properties.MetricName).startsWith('Crl')));
  assert.throws(() => stackOf({ crlMode: true }), /name the buckets of the CAs' CrlConfiguration/);
  assert.throws(() => stackOf({ crlBuckets: ['meshca-crls'] }), /crlBuckets is given but crlMode is not true/);
  assert.throws(() => stackOf({ crlMode: true, crlBuckets: ['Not A Bucket'] }), /not an S3 bucket name/);
  // Vault's CRLs come from its mount: CRL mode needs no bucket there.
  const vault = synth({ caArn: undefined, crlMode: true, vault: { addr: 'https://vault.example:8200', awsRole: 'meshca' } }).template;
  assert.ok(!statements(vault).some((s) => JSON.stringify(s.Action).includes('s3:')));
});

test('a custom escrow prefix is where the role may write, in every region', () => {
  const { template } = synth({ secretPrefix: 'mesh/prod/', memberAccounts: [{ account: '222233334444', regions: ['ap-south-1'] }] });
  const escrow = statements(template).find((s) => s.Sid === 'EscrowUnderTheMeshcaPrefix')!;
  const text = JSON.stringify(escrow.Resource);
  for (const r of ['eu-west-1', 'us-east-1', 'ap-south-1']) assert.match(text, new RegExp(`secretsmanager:${r}:111122223333:secret:mesh/prod/\\*`));
  assert.doesNotMatch(text, /secret:meshca\//);
  const env = Object.values(template.findResources('AWS::Lambda::Function'))[0].Properties.Environment.Variables;
  assert.equal(env.MESHCA_SECRET_PREFIX, 'mesh/prod');
  assert.throws(() => stackOf({ secretPrefix: 'mesh prod' }), /not a Secrets Manager name prefix/);
});

test('member accounts from context: role name and external id as JSON, ids as a list', () => {
  const app = new cdk.App({ context: { 'meshca:caArn': CA, 'meshca:memberAccounts': '[{"account": "222233334444", "roleName": "mesh-ca", "externalId": "x-1", "regions": ["eu-west-1"]}]' } });
  assert.deepEqual(propsFromContext(app).memberAccounts, [{ account: '222233334444', roleName: 'mesh-ca', externalId: 'x-1', regions: ['eu-west-1'] }]);
  const ids = new cdk.App({ context: { 'meshca:caArn': CA, 'meshca:memberAccounts': '222233334444, 333344445555' } });
  assert.deepEqual(propsFromContext(ids).memberAccounts, [{ account: '222233334444' }, { account: '333344445555' }]);
  const bad = new cdk.App({ context: { 'meshca:caArn': CA, 'meshca:memberAccounts': '[{"account": "222233334444", "role": "x"}]' } });
  assert.throws(() => propsFromContext(bad), /knows only account, regions, roleName, externalId/);
});

test('the member template deploys through StackSets into an account CDK never bootstrapped', () => {
  const app = new cdk.App();
  const stack = new MeshcaMemberStack(app, 'MeshcaMember', {
    centralRoleArn: 'arn:aws:iam::111122223333:role/Meshca-Role', centralBusArn: 'arn:aws:events:eu-west-1:111122223333:event-bus/default',
    env: { account: '222233334444', region: 'eu-west-1' },
  });
  const json = Template.fromStack(stack).toJSON();
  assert.equal(json.Parameters?.BootstrapVersion, undefined, 'no BootstrapVersion parameter');
  assert.equal(json.Rules?.CheckBootstrapVersion, undefined, 'no bootstrap version rule');
  assert.doesNotMatch(JSON.stringify(json), /cdk-hnb659fds|BootstrapVersion/);
});

test('a CDK app outside its checkout names the checkout, or says how to', () => {
  const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'meshca-cdk-'));
  assert.throws(() => stackOf({ workspaceDir: elsewhere }), /is not a meshca checkout .*fix workspaceDir \/ -c meshca:workspace/);
  const app = new cdk.App({ context: { 'aws:cdk:bundling-stacks': [], 'meshca:caArn': CA, 'meshca:workspace': ROOT } });
  assert.equal(propsFromContext(app).workspaceDir, ROOT);
  new MeshcaStack(app, 'Named', { ...propsFromContext(app), env: { account: '111122223333', region: 'eu-west-1' } });
});

test('cluster access is the RBAC meshca access prints for the configured kinds, not an edit policy', () => {
  const grant = (extra: Partial<MeshcaProps>) =>
    JSON.stringify(synth(extra).template.toJSON().Outputs.GrantClusterAccess.Value);
  const plain = grant({});
  assert.ok(plain.includes('--kubernetes-groups meshca && meshca access --kind istio-cacerts |'), plain);
  assert.ok(!plain.includes('AmazonEKSEditPolicy'), plain);
  const kinds = grant({ kinds: ['istio-cacerts', 'cert-manager-ca', 'xcp-central', 'linkerd-issuer'] });
  for (const k of ['istio-cacerts', 'cert-manager-ca', 'xcp-central', 'linkerd-issuer']) {
    assert.ok(kinds.includes(`--kind ${k}`), kinds);
  }
  assert.ok(!kinds.includes('--tsb-namespace') && !kinds.includes('--cert-manager-secret'), kinds);
  // Moved landings are granted where they moved to, not at the catalogue's defaults.
  const moved = grant({ kinds: ['mpc', 'cert-manager-ca', 'linkerd-issuer'], tsbNamespace: 'tetrate', certManagerSecret: 'istio-csr/ca' });
  assert.ok(moved.includes('--kind mpc --kind cert-manager-ca --kind linkerd-issuer --tsb-namespace tetrate --cert-manager-secret istio-csr/ca |'), moved);
});

test('revoke requests reach cluster-events from this account, and from the security account only when one is named', () => {
  const rules = (t: Template) => Object.values(t.findResources('AWS::Events::Rule'))
    .filter((r) => JSON.stringify(r.Properties.EventPattern ?? {}).includes('meshca Revoke Requested'));
  const plain = synth().template;
  assert.equal(rules(plain).length, 1);
  assert.deepEqual(rules(plain)[0].Properties.EventPattern.account, ['111122223333']);
  assert.equal(Object.keys(plain.findResources('AWS::Events::EventBusPolicy')).length, 0);

  const SEC = '444455556666';
  const { template } = synth({ securityAccount: SEC, memberAccounts: [{ account: M1 }] });
  const [rule] = rules(template);
  assert.deepEqual(rule.Properties.EventPattern.account, ['111122223333', SEC]);
  assert.ok(JSON.stringify(rule.Properties.Targets).includes('ClusterEvents'), 'the rule targets cluster-events');
  const policies = Object.values(template.findResources('AWS::Events::EventBusPolicy')).map((p) => p.Properties);
  const revokes = policies.find((p) => p.StatementId === 'MeshcaSecurityAccountRevokes');
  assert.ok(revokes, JSON.stringify(policies));
  assert.deepEqual(revokes.Statement.Condition, { StringEquals: { 'events:source': 'meshca', 'events:detail-type': 'meshca Revoke Requested' } });
  assert.ok(JSON.stringify(revokes.Statement.Principal).includes(`iam::${SEC}:root`));
  for (const f of Object.values(template.findResources('AWS::Lambda::Function'))) {
    assert.equal(f.Properties.Environment.Variables.MESHCA_SECURITY_ACCOUNT, SEC);
  }
  assert.throws(() => synth({ securityAccount: M1, memberAccounts: [{ account: M1 }] }), /member account, and a member can never revoke/);
  assert.throws(() => synth({ securityAccount: '111122223333' }), /own account/);
  assert.throws(() => synth({ securityAccount: 'sec' }), /not a 12-digit account id/);
  const ctx = new cdk.App({ context: { 'meshca:caArn': CA, 'meshca:securityAccount': SEC } });
  assert.equal(propsFromContext(ctx).securityAccount, SEC);
});
