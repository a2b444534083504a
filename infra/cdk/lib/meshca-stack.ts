// meshca in one stack: the two Lambda functions, their triggers, the escrow key, alarms, and a
// role that can do what meshca does and nothing else.

import * as cdk from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import * as fs from 'fs';
import * as path from 'path';
import settingsList from './settings.json';

/** One setting the functions read (lib/settings.json, the one list CDK, Terraform and the docs
 * are checked against): its variable, and the name CDK (context `meshca:<cdk>` and prop) and
 * Terraform give it. */

/** The per-cluster lines the functions log (functions/lambda/src/metrics.rs), one row per
 * cluster; the Terraform module's dashboard runs the same queries. */
export const PER_CLUSTER_QUERY = [
  'filter ispresent(Cluster) and ispresent(Outcome)',
  'stats min(DaysLeft) as days_left, latest(Outcome) as outcome, sum(Renewals) as renewals, sum(Failures) as failures by Account, Region, Cluster',
  'sort days_left asc',
  'limit 100',
];
export const FAILURES_QUERY = [
  'filter Failures > 0',
  'stats count(*) as failures, latest(Outcome) as outcome by Account, Region, Cluster',
  'sort failures desc',
  'limit 100',
];

export interface Setting {
  readonly env: string;
  /** direct: passed through as given; stack: the stack also grants or checks with it;
   * deployment: set by the stack from what it creates or from the named setting. */
  readonly mapping: 'direct' | 'stack' | 'deployment';
  readonly cdk: string | null;
  readonly terraform: string | null;
  readonly type?: 'string' | 'number' | 'bool' | 'list';
  readonly separator?: string;
  readonly choices?: string[];
  /** What the functions do when the variable is not set (null: nothing fixed). */
  readonly default: string | null;
  readonly example?: string;
  readonly doc: string;
}
export const SETTINGS: readonly Setting[] = settingsList.settings as Setting[];
/** The settings passed through unchanged: each a prop and a context key of the same name. */
export const DIRECT_SETTINGS: readonly Setting[] = SETTINGS.filter((s) => s.mapping === 'direct');

/** The PathLen0 subordinate template: the only one meshca may issue intermediates with. */
export const PATHLEN0_TEMPLATE = 'template/SubordinateCACertificate_PathLen0/V1';
/** The end-entity template of TSB's XCP identities (xcp-central, mpc, xcp-edge). */
export const END_ENTITY_TEMPLATE = 'template/EndEntityCertificate/V1';

/** Vault / OpenBao as the authority instead of Private CA: the functions get no PCA permission. */
export interface MeshcaVaultProps {
  /** https://vault.example:8200 */
  readonly addr: string;
  /** The PKI mount (default pki). */
  readonly mount?: string;
  readonly issuer?: string;
  readonly namespace?: string;
  /** PEM of the CA Vault's TLS certificate chains to (default: the system's roots). */
  readonly caCertPem?: string;
  /** AppRole login: the role id, and the Secrets Manager secret holding the secret id. */
  readonly roleId?: string;
  readonly secretIdArn?: string;
  /** AWS IAM login instead: the Vault role the functions' IAM role maps to. */
  readonly awsRole?: string;
  /** Mount of the login method (default approle or aws). */
  readonly authMount?: string;
  /** AWS IAM login: sign for this region's STS endpoint, when Vault's AWS method expects it. */
  readonly awsStsRegion?: string;
  /** AWS IAM login: the X-Vault-AWS-IAM-Server-ID value Vault requires, if any. */
  readonly awsServerId?: string;
}

/** A member account whose EKS clusters meshca manages through a role it assumes there (deployed
 * by MeshcaMemberStack or the meshca-member Terraform module). */
export interface MeshcaMemberAccount {
  /** The 12-digit account id. */
  readonly account: string;
  /** Regions of its clusters; default: the stack's `regions`. */
  readonly regions?: string[];
  /** The role meshca assumes there (default meshca-member). */
  readonly roleName?: string;
  /** Required by the role's trust policy, when the member set one. */
  readonly externalId?: string;
}

export interface MeshcaProps extends cdk.StackProps {
  /** ARN of the AWS Private CA that signs every cluster's intermediate (or give `vault`). */
  readonly caArn?: string;
  /** A role in the CA's account that the functions assume to call Private CA (a CA in another
   * account not shared through AWS RAM); MESHCA_CA_ROLE_ARN. */
  readonly caRoleArn?: string;
  /** The external id that role's trust policy requires, if any (MESHCA_CA_EXTERNAL_ID). */
  readonly caExternalId?: string;
  /** Vault / OpenBao PKI as the authority (or give `caArn`). */
  readonly vault?: MeshcaVaultProps;
  /** Issue TSB's XCP identities (EndEntityCertificate/V1) too; default false: the role may use the PathLen0 template only. */
  readonly xcpIdentities?: boolean;
  /** The Private CA that signs the XCP identities, if not `caArn` (MESHCA_XCP_CA_ARN). */
  readonly xcpCaArn?: string;
  /** Private CAs a root rotation moves to (`meshca rotate-root start --to ARN`) or still retires:
   * the same PathLen0-only grant as `caArn`. Add the new CA before starting; remove the old one
   * once the rotation is done and `caArn` names the new CA. */
  readonly rotationCaArns?: string[];
  /** Alarm when a root rotation stands in one phase longer than this (default 72 h: the 26-h soak twice, plus a day). */
  readonly rotationStuckAfterHours?: number;
  /** Template ARN; default SubordinateCACertificate_PathLen0/V1 in the CA's partition. */
  readonly templateArn?: string;
  /** Regions whose EKS clusters are managed; default: the stack's region. */
  readonly regions?: string[];
  /** Member accounts whose clusters are managed too (MESHCA_ACCOUNTS): the role may assume their
   * member role and nothing else, and the default bus accepts their forwarded EKS events. */
  readonly memberAccounts?: MeshcaMemberAccount[];
  /** Accept forwarded events from every account of this AWS Organizations organisation instead
   * of the listed member accounts only (the functions still act only for listed accounts). */
  readonly organizationId?: string;
  /** An account whose `meshca Revoke Requested` events are honoured besides this one's (a
   * security team's, MESHCA_SECURITY_ACCOUNT): the default bus accepts exactly those events from
   * it. Never a member account: a member can never revoke. */
  readonly securityAccount?: string;
  /** CRL mode (MESHCA_CRL_MODE): after each sweep the fleet's CRLs go into every istio-layout
   * cluster's cacerts, and the CrlDaysLeft and CrlFailures alarms watch them. One-way once
   * delivered; see docs/compromise.md. */
  readonly crlMode?: boolean;
  /** The S3 buckets the Private CAs publish CRLs to (MESHCA_CRL_BUCKETS): in CRL mode the role
   * may read their objects, nothing else of S3. Required with crlMode and a Private CA. */
  readonly crlBuckets?: string[];
  /** CRL mode with a root kept offline: where its owner puts its CRL, s3://BUCKET/KEY, each in
   * a bucket of crlBuckets (MESHCA_ROOT_CRLS). */
  readonly rootCrls?: string[];
  /** Opt-in tag on EKS clusters; default meshca.io/enabled=true. */
  readonly tagKey?: string;
  readonly tagValue?: string;
  /** Lifetime of each intermediate in days (default 365). */
  readonly validityDays?: number;
  /** Renew when fewer days are left (default: a third of the lifetime). */
  readonly renewBeforeDays?: number;
  /** How often the expiry sweep runs (default every hour); the sweep alarm fires after three missed runs. */
  readonly sweepEvery?: cdk.Duration;
  /**
   * How often the sweep reads each healthy cluster's secrets back and repairs drift (default one
   * day). Between those turns a healthy cluster costs no call: escrow's summary keeps it.
   */
  readonly verifyEvery?: cdk.Duration;
  /**
   * The work queue's MaximumConcurrency: at most this many renewal-worker instances issue at
   * once, each at 1/N of the deployment's issue rate (default 4; 2–1000).
   */
  readonly workerConcurrency?: number;
  /** Alarm when the soonest-expiring bundle has fewer days left (default 7). */
  readonly alarmDaysLeft?: number;
  /** Retention of the functions' logs (default one year). */
  readonly logRetention?: logs.RetentionDays;
  /** The meshca checkout the functions are built from (its Cargo.toml); default: the checkout
   * this file is in. Context `meshca:workspace`, for a copy of infra/cdk kept elsewhere. */
  readonly workspaceDir?: string;
  /** Name prefix of the escrow secrets (default meshca/<region>); the role may write under it only. */
  readonly secretPrefix?: string;
  /** Key of each intermediate: ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096. */
  readonly keyAlgorithm?: string;
  /** How long a deleted cluster's escrow can be restored, 7-30 days (default 30). */
  readonly recoveryWindowDays?: number;
  /** auto (default: when Istio needs it), always or never. */
  readonly restartIstiod?: string;
  /** Take over a cacerts meshca did not create (migrating from the manual runbook); default false. */
  readonly adopt?: boolean;
  /** Decide and report, change nothing (default false). */
  readonly dryRun?: boolean;
  /** How often a new cluster is polled for ACTIVE, seconds (default 15). */
  readonly activePollSeconds?: number;
  /** IssueCertificate attempts per second for the deployment, retries included (default 20). */
  readonly issueRate?: number;
  /** Clusters a sweep works on at once (default 32). */
  readonly sweepConcurrency?: number;
  /** Above this many clusters needing a look, the sweep hands them to the work queue (default 1000). */
  readonly fanoutThreshold?: number;
  /** Kinds every opted-in cluster gets unless its kinds tag names them (default istio-cacerts). */
  readonly kinds?: string[];
  readonly kindsTag?: string;
  readonly tsbRoleTag?: string;
  readonly tsbNameTag?: string;
  readonly tsbNamespace?: string;
  /** DNS names or IP addresses xcp-central must carry (JWT mode). */
  readonly tsbCentralAddresses?: string[];
  /** Where cert-manager-ca lands, NAMESPACE/NAME (default cert-manager/istio-ca). */
  readonly certManagerSecret?: string;
}

/** A direct setting's value from context: `-c` gives text, cdk.json may give typed values. */
function contextValue(s: Setting, v: unknown): unknown {
  if (typeof v !== 'string') return v;
  switch (s.type) {
    case 'list': return v.split(/[\s,]+/).filter((x) => x.length > 0);
    case 'bool':
      if (v !== 'true' && v !== 'false') throw new Error(`context meshca:${s.cdk}: ${JSON.stringify(v)} is not true or false`);
      return v === 'true';
    case 'number': {
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`context meshca:${s.cdk}: ${JSON.stringify(v)} is not a number`);
      return n;
    }
    default: return v;
  }
}

/** A direct setting's variable value, checked against its type and choices. */
function rendered(s: Setting, v: unknown): string {
  const bad = (why: string) => new Error(`${s.cdk} (${s.env}): ${JSON.stringify(v)} ${why}`);
  switch (s.type) {
    case 'list':
      if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string' && x.length > 0)) throw bad('is not a list of names');
      return v.join(s.separator ?? ',');
    case 'bool':
      if (typeof v !== 'boolean') throw bad('is not true or false');
      return String(v);
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw bad('is not a number of at least 0');
      return String(v);
    default:
      if (typeof v !== 'string' || v.length === 0) throw bad('is not a non-empty string');
      if (s.choices && !s.choices.includes(v)) throw bad(`is not one of ${s.choices.join(', ')}`);
      return v;
  }
}

/** The functions' variables of the direct settings given in `props`. */
export function directEnvironment(props: MeshcaProps): Record<string, string> {
  const given = props as unknown as Record<string, unknown>;
  const env: Record<string, string> = {};
  for (const s of DIRECT_SETTINGS) {
    const v = given[s.cdk!];
    if (v !== undefined) env[s.env] = rendered(s, v);
  }
  return env;
}

/** `meshca:memberAccounts`: comma-separated ids, or a JSON list of {account, regions, roleName, externalId}. */
function memberAccountsFromContext(text: string | undefined): MeshcaMemberAccount[] | undefined {
  if (text === undefined) return undefined;
  if (!text.trim().startsWith('[')) {
    return text.split(',').map((a) => a.trim()).filter((a) => a.length > 0).map((account) => ({ account }));
  }
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch (e) {
    throw new Error(`context meshca:memberAccounts: not a JSON list of {account, regions, roleName, externalId}: ${e}`);
  }
  const known = new Set(['account', 'regions', 'roleName', 'externalId']);
  if (!Array.isArray(list)) throw new Error('context meshca:memberAccounts: not a JSON list');
  return list.map((m) => {
    const extra = Object.keys(m ?? {}).filter((k) => !known.has(k));
    if (typeof m?.account !== 'string' || extra.length > 0) {
      throw new Error(`context meshca:memberAccounts: ${JSON.stringify(m)} needs an account and knows only ${[...known].join(', ')}`);
    }
    return m as MeshcaMemberAccount;
  });
}

/** Reads the props from CDK context (`-c meshca:caArn=...`), for `cdk synth`/`deploy` from the CLI. */
export function propsFromContext(scope: Construct): MeshcaProps {
  const ctx = (k: string): string | undefined => scope.node.tryGetContext(`meshca:${k}`);
  const num = (k: string): number | undefined => {
    const v = ctx(k);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`context meshca:${k}: ${JSON.stringify(v)} is not a positive whole number`);
    return n;
  };
  const caArn = ctx('caArn');
  const vaultAddr = ctx('vaultAddr');
  if (!caArn && !vaultAddr) {
    throw new Error('context meshca:caArn is required (or meshca:vaultAddr for Vault): cdk synth -c meshca:caArn=arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID');
  }
  const vault: MeshcaVaultProps | undefined = vaultAddr
    ? { addr: vaultAddr, mount: ctx('vaultMount'), issuer: ctx('vaultIssuer'), namespace: ctx('vaultNamespace'),
        caCertPem: ctx('vaultCaCertPem'), roleId: ctx('vaultRoleId'), secretIdArn: ctx('vaultSecretIdArn'), awsRole: ctx('vaultAwsRole'),
        authMount: ctx('vaultAuthMount'), awsStsRegion: ctx('vaultAwsStsRegion'), awsServerId: ctx('vaultAwsServerId') }
    : undefined;
  const direct: Record<string, unknown> = {};
  for (const s of DIRECT_SETTINGS) {
    const v: unknown = scope.node.tryGetContext(`meshca:${s.cdk}`);
    if (v !== undefined) direct[s.cdk!] = contextValue(s, v);
  }
  const minutes = (k: string): cdk.Duration | undefined => {
    const n = num(k);
    return n === undefined ? undefined : cdk.Duration.minutes(n);
  };
  const flagOf = (k: string): boolean | undefined => {
    const v: unknown = scope.node.tryGetContext(`meshca:${k}`);
    if (v === undefined || v === true || v === false) return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw new Error(`context meshca:${k}: ${JSON.stringify(v)} is not true or false`);
  };
  const xcpIdentities = ctx('xcpIdentities');
  if (xcpIdentities !== undefined && xcpIdentities !== 'true' && xcpIdentities !== 'false') {
    throw new Error(`context meshca:xcpIdentities: ${JSON.stringify(xcpIdentities)} is not true or false`);
  }
  const verifyHours = num('verifyEveryHours');
  const retentionDays = num('logRetentionDays');
  if (retentionDays !== undefined && !Object.values(logs.RetentionDays).includes(retentionDays)) {
    throw new Error(`context meshca:logRetentionDays: ${retentionDays} is not a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ..., 365, ...)`);
  }
  return {
    ...direct,
    caArn,
    caRoleArn: ctx('caRoleArn'),
    vault,
    workspaceDir: ctx('workspace'),
    sweepEvery: minutes('sweepEveryMinutes'),
    verifyEvery: verifyHours === undefined ? undefined : cdk.Duration.hours(verifyHours),
    workerConcurrency: num('workerConcurrency'),
    logRetention: retentionDays as logs.RetentionDays | undefined,
    secretPrefix: ctx('secretPrefix'),
    xcpIdentities: xcpIdentities === 'true',
    xcpCaArn: ctx('xcpCaArn'),
    rotationCaArns: ctx('rotationCaArns')?.split(',').map((a) => a.trim()).filter((a) => a.length > 0),
    rotationStuckAfterHours: num('rotationStuckAfterHours'),
    templateArn: ctx('templateArn'),
    regions: ctx('regions')?.split(',').map((r) => r.trim()).filter((r) => r.length > 0),
    memberAccounts: memberAccountsFromContext(ctx('memberAccounts')),
    organizationId: ctx('organizationId'),
    securityAccount: ctx('securityAccount'),
    crlMode: flagOf('crlMode'),
    crlBuckets: ctx('crlBuckets')?.split(',').map((b) => b.trim()).filter((b) => b.length > 0),
    rootCrls: ctx('rootCrls')?.split(',').map((u) => u.trim()).filter((u) => u.length > 0),
    validityDays: num('validityDays'),
    renewBeforeDays: num('renewBeforeDays'),
    alarmDaysLeft: num('alarmDaysLeft'),
  };
}

export class MeshcaStack extends cdk.Stack {
  /** The role both functions run as: the principal each cluster grants access to. */
  readonly role: iam.Role;
  readonly clusterEvents: lambda.Function;
  readonly expirySweep: lambda.Function;
  readonly renewalWorker: lambda.Function;
  readonly workQueue: sqs.Queue;
  readonly escrowKey: kms.Key;
  readonly bus: events.EventBus;

  constructor(scope: Construct, id: string, props: MeshcaProps) {
    super(scope, id, props);
    if ((props.caArn === undefined) === (props.vault === undefined)) {
      throw new Error('give exactly one authority: caArn (AWS Private CA) or vault (Vault / OpenBao)');
    }
    const arn = props.caArn === undefined ? undefined : cdk.Arn.split(props.caArn, cdk.ArnFormat.SLASH_RESOURCE_NAME);
    if (arn && (arn.service !== 'acm-pca' || arn.resource !== 'certificate-authority')) {
      throw new Error(`caArn ${props.caArn} is not an acm-pca certificate-authority ARN`);
    }
    if (props.vault) checkVault(props.vault);
    const validityDays = props.validityDays ?? 365;
    if (props.renewBeforeDays !== undefined && props.renewBeforeDays >= validityDays) {
      throw new Error(`renewBeforeDays (${props.renewBeforeDays}) must be below validityDays (${validityDays})`);
    }
    const templateArn = arn ? props.templateArn ?? `arn:${arn.partition}:acm-pca:::${PATHLEN0_TEMPLATE}` : undefined;
    const regions = props.regions && props.regions.length > 0 ? props.regions : [this.region];
    const sweepEvery = props.sweepEvery ?? cdk.Duration.hours(1);
    const workspace = workspaceOf(props.workspaceDir);
    const secretPrefix = props.secretPrefix?.replace(/\/+$/, '');
    if (secretPrefix !== undefined && !/^[A-Za-z0-9_+=.@-]+(\/[A-Za-z0-9_+=.@-]+)*$/.test(secretPrefix)) {
      throw new Error(`secretPrefix ${JSON.stringify(props.secretPrefix)} is not a Secrets Manager name prefix (letters, digits, / _ + = . @ -)`);
    }

    this.escrowKey = new kms.Key(this, 'EscrowKey', {
      description: 'meshca: encrypts the escrowed cluster CA bundles, the functions\' logs, dead letters and alarm messages',
      enableKeyRotation: true,
      removalPolicy: cdk.RemovalPolicy.RETAIN,
    });
    // CloudWatch Logs encrypts the functions' log groups (and only those) with it.
    this.escrowKey.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'LogsOfThisAccountInThisRegion',
      principals: [new iam.ServicePrincipal(`logs.${this.region}.amazonaws.com`)],
      actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      resources: ['*'],
      conditions: { ArnLike: { 'kms:EncryptionContext:aws:logs:arn': `arn:${this.partition}:logs:${this.region}:${this.account}:log-group:*` } },
    }));
    this.bus = new events.EventBus(this, 'ReconcileBus', { description: 'meshca Reconcile Requested events fanned out by the sweep' });

    // Fan-out goes through the work queue: Lambda runs at most workerConcurrency workers on it.
    const workerConcurrency = props.workerConcurrency ?? 4;
    if (!Number.isInteger(workerConcurrency) || workerConcurrency < 2 || workerConcurrency > 1000) {
      throw new Error(`workerConcurrency must be an integer in 2..1000 (SQS MaximumConcurrency), not ${workerConcurrency}`);
    }
    const encrypted = { enforceSSL: true, encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: this.escrowKey };
    const workDlq = new sqs.Queue(this, 'WorkDlq', { ...encrypted, retentionPeriod: cdk.Duration.days(14) });
    this.workQueue = new sqs.Queue(this, 'WorkQueue', {
      ...encrypted,
      // Six times the worker's timeout, as Lambda advises for an SQS event source.
      visibilityTimeout: cdk.Duration.minutes(90),
      retentionPeriod: cdk.Duration.days(4),
      deadLetterQueue: { queue: workDlq, maxReceiveCount: 3 },
    });

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'meshca functions: issue PathLen0 intermediates from one CA, escrow them, deliver them to opted-in EKS clusters',
    });
    for (const r of props.rotationCaArns ?? []) {
      const x = cdk.Arn.split(r, cdk.ArnFormat.SLASH_RESOURCE_NAME);
      if (x.service !== 'acm-pca' || x.resource !== 'certificate-authority') throw new Error(`rotationCaArns: ${r} is not an acm-pca certificate-authority ARN`);
    }
    if (props.rotationCaArns?.length && !props.caArn) throw new Error('rotationCaArns need caArn: a rotation between Private CAs');
    if (props.caArn && templateArn) this.grantPca([props.caArn, ...(props.rotationCaArns ?? [])], templateArn);
    const xcpCa = props.xcpCaArn ?? props.caArn;
    if (props.xcpCaArn && !props.xcpIdentities) throw new Error('xcpCaArn is given but xcpIdentities is not true');
    if (props.xcpIdentities) {
      if (!xcpCa) throw new Error('xcpIdentities need a Private CA: caArn or xcpCaArn (Vault does not sign them)');
      const x = cdk.Arn.split(xcpCa, cdk.ArnFormat.SLASH_RESOURCE_NAME);
      if (x.service !== 'acm-pca' || x.resource !== 'certificate-authority') throw new Error(`xcpCaArn ${xcpCa} is not an acm-pca certificate-authority ARN`);
      this.grantXcp(xcpCa, `arn:${x.partition}:acm-pca:::${END_ENTITY_TEMPLATE}`, xcpCa !== props.caArn);
    }
    if (props.vault?.secretIdArn) this.grantVaultSecretId(props.vault.secretIdArn);
    if (props.caRoleArn) this.grantCaRole(props.caRoleArn, arn?.account);
    const members = memberAccountsOf(props, regions, this.partition);
    this.grantMeshca(regions, members, secretPrefix);
    if (members.length > 0) this.acceptMemberEvents(members, props.organizationId);
    const security = props.securityAccount;
    if (security !== undefined) this.acceptRevokeRequests(security, members);
    const crlBuckets = this.crlBucketsOf(props);

    const env: Record<string, string> = {
      ...(props.caArn && templateArn ? { MESHCA_CA_ARN: props.caArn, MESHCA_TEMPLATE_ARN: templateArn } : {}),
      ...(props.xcpCaArn ? { MESHCA_XCP_CA_ARN: props.xcpCaArn } : {}),
      ...(props.caRoleArn ? { MESHCA_CA_ROLE_ARN: props.caRoleArn } : {}),
      ...directEnvironment(props),
      ...(props.vault ? vaultEnvironment(props.vault) : {}),
      ...(secretPrefix ? { MESHCA_SECRET_PREFIX: secretPrefix } : {}),
      MESHCA_REGIONS: regions.join(','),
      MESHCA_VALIDITY_DAYS: String(validityDays),
      MESHCA_KMS_KEY_ID: this.escrowKey.keyArn,
      MESHCA_EVENT_BUS: this.bus.eventBusName,
      MESHCA_WORK_QUEUE_URL: this.workQueue.queueUrl,
      MESHCA_SWEEP_MINUTES: String(sweepEvery.toMinutes()),
      // Healthy clusters' secrets are read back about once per verifyEvery (default a day).
      MESHCA_VERIFY_EVERY: String(Math.max(1, Math.round((props.verifyEvery ?? cdk.Duration.days(1)).toMinutes() / sweepEvery.toMinutes()))),
      ...(security ? { MESHCA_SECURITY_ACCOUNT: security } : {}),
      ...(props.crlMode ? { MESHCA_CRL_MODE: 'true' } : {}),
      ...(crlBuckets.length > 0 ? { MESHCA_CRL_BUCKETS: crlBuckets.join(',') } : {}),
      ...(props.rootCrls?.length ? { MESHCA_ROOT_CRLS: props.rootCrls.join(',') } : {}),
      ...(members.length > 0 ? { MESHCA_ACCOUNTS: JSON.stringify(members.map((m) => ({
        account: m.account, role: m.roleArn, regions: m.regions, ...(m.externalId ? { externalId: m.externalId } : {}),
      }))) } : {}),
    };
    if (props.renewBeforeDays !== undefined) env.MESHCA_RENEW_BEFORE_DAYS = String(props.renewBeforeDays);

    const retention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    const binaries: Record<string, string> = { ClusterEvents: 'cluster-events', ExpirySweep: 'expiry-sweep', RenewalWorker: 'renewal-worker' };
    const logGroups: Record<string, logs.LogGroup> = {};
    const fn = (name: string, description: string, memorySize: number, own: Record<string, string> = {}): lambda.Function => {
      const logGroup = new logs.LogGroup(this, `${name}Logs`, { retention, encryptionKey: this.escrowKey, removalPolicy: cdk.RemovalPolicy.DESTROY });
      logGroups[name] = logGroup;
      logGroup.grantWrite(this.role);
      const f = new RustFunction(this, name, {
        manifestPath: path.join(workspace, 'Cargo.toml'),
        binaryName: binaries[name],
        description,
        architecture: lambda.Architecture.ARM_64,
        memorySize,
        // CreateCluster waits for ACTIVE (EKS takes ~10 min) within one invocation; a sweep of a
        // large fleet runs at the IssueCertificate budget. Both get Lambda's longest timeout.
        timeout: cdk.Duration.minutes(15),
        role: this.role,
        logGroup,
        environment: { ...env, ...own },
        // The workspace builds the CLI by default: name each function's package.
        bundling: { cargoLambdaFlags: ['--locked', '--package', binaries[name]] },
      });
      f.node.defaultChild && (f.node.defaultChild as cdk.CfnResource).addMetadata('checkov', {
        skip: [
          { id: 'CKV_AWS_116', comment: 'Invoked by EventBridge or the work queue only; each rule target and the queue have their own retries and SQS dead-letter queue.' },
          { id: 'CKV_AWS_117', comment: 'Reaches public EKS API endpoints and AWS APIs; no VPC resource is accessed. Private-endpoint clusters need a VPC configuration (docs/deploy.md).' },
          { id: 'CKV_AWS_115', comment: 'Reserved concurrency would fail deployment in accounts with a low concurrency quota; the sweep bounds its own concurrency and IssueCertificate rate.' },
          { id: 'CKV_AWS_173', comment: 'The environment holds only ARNs and settings, no secret; the key material lives in Secrets Manager under the CMK.' },
          { id: 'CKV_AWS_45', comment: 'MESHCA_ACCOUNTS lists account ids and role ARNs (an external id guards against a confused deputy; it is not a secret); keys live in Secrets Manager.' },
        ],
      });
      return f;
    };
    this.clusterEvents = fn('ClusterEvents', 'meshca: a CA for each new opted-in EKS cluster, revocation when deleted', 256);
    this.expirySweep = fn('ExpirySweep', 'meshca: renews what is due and repairs drifted cacerts across the fleet', 512);
    this.renewalWorker = fn('RenewalWorker', 'meshca: reconciles the clusters the sweep queued, at its share of the issue rate', 256, {
      MESHCA_WORKER_CONCURRENCY: String(workerConcurrency),
    });
    // The mapping, not a grant helper: the role's queue and key permissions are the statements above.
    new lambda.EventSourceMapping(this, 'WorkQueueSource', {
      target: this.renewalWorker,
      eventSourceArn: this.workQueue.queueArn,
      batchSize: 10,
      maxConcurrency: workerConcurrency,
      reportBatchItemFailures: true,
    });

    // Each trigger retries, then dead-letters what it could not deliver.
    const dlq = (name: string): sqs.Queue =>
      new sqs.Queue(this, name, { enforceSSL: true, encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: this.escrowKey, retentionPeriod: cdk.Duration.days(14) });
    // EventBridge writes the dead letters: it needs the key for that.
    this.escrowKey.grant(new iam.ServicePrincipal('events.amazonaws.com'), 'kms:GenerateDataKey', 'kms:Decrypt');
    const eventsDlq = dlq('ClusterEventsDlq');
    const sweepDlq = dlq('SweepDlq');
    const target = (f: lambda.Function, deadLetterQueue: sqs.Queue) =>
      new targets.LambdaFunction(f, { deadLetterQueue, retryAttempts: 4, maxEventAge: cdk.Duration.hours(6) });

    new events.Rule(this, 'EksCreateDelete', {
      description: 'CloudTrail CreateCluster/DeleteCluster of EKS clusters in this region, and those member accounts forward',
      eventPattern: {
        ...(members.length > 0 ? { account: [this.account, ...members.map((m) => m.account)] } : {}),
        source: ['aws.eks'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: { eventSource: ['eks.amazonaws.com'], eventName: ['CreateCluster', 'DeleteCluster'] },
      },
      targets: [target(this.clusterEvents, eventsDlq)],
    });
    new events.Rule(this, 'ReconcileRequests', {
      eventBus: this.bus,
      description: 'meshca Reconcile Requested: one cluster each, fanned out by the sweep',
      eventPattern: { source: ['meshca'], detailType: ['meshca Reconcile Requested'] },
      targets: [target(this.clusterEvents, eventsDlq)],
    });
    // A compromised cluster revoked from AWS (docs/compromise.md): meshca's own account, or the
    // security account, puts `meshca Revoke Requested` on the default bus.
    new events.Rule(this, 'RevokeRequests', {
      description: 'meshca Revoke Requested: revoke and hold one cluster, from this account or the security account',
      eventPattern: { account: [this.account, ...(security ? [security] : [])], source: ['meshca'], detailType: ['meshca Revoke Requested'] },
      targets: [target(this.clusterEvents, eventsDlq)],
    });
    new events.Rule(this, 'Sweep', {
      description: 'meshca expiry sweep',
      schedule: events.Schedule.rate(sweepEvery),
      targets: [new targets.LambdaFunction(this.expirySweep, { deadLetterQueue: sweepDlq, retryAttempts: 2 })],
    });

    const dlqs = { ClusterEvents: eventsDlq, ExpirySweep: sweepDlq, RenewalWorker: workDlq };
    this.alarms(props.alarmDaysLeft ?? 7, dlqs, sweepEvery, props.rotationStuckAfterHours ?? 72);
    if (props.crlMode) this.crlAlarms(sweepEvery);
    this.whereToLook(logGroups, dlqs);
    this.dashboard(logGroups);

    new cdk.CfnOutput(this, 'RoleArn', {
      value: this.role.roleArn,
      description: 'Grant this role access to each cluster: an EKS access entry mapping it to the Kubernetes group meshca, and the RBAC `meshca access` prints for the kinds',
    });
    // `meshca access` derives each kind's namespace, secrets and ConfigMaps from the catalogue.
    // Where the kinds land is the functions' setting as much as the catalogue's: pass it on.
    const kindFlags = (props.kinds ?? ['istio-cacerts']).map((k) => ` --kind ${k}`).join('')
      + (props.tsbNamespace ? ` --tsb-namespace ${props.tsbNamespace}` : '')
      + (props.certManagerSecret ? ` --cert-manager-secret ${props.certManagerSecret}` : '');
    new cdk.CfnOutput(this, 'GrantClusterAccess', {
      description: 'Run per cluster (authentication mode API or API_AND_CONFIG_MAP; the namespaces of the kinds must exist): exactly what meshca writes, nothing else',
      value: cdk.Fn.join('', [
        'aws eks create-access-entry --cluster-name CLUSTER --principal-arn ', this.role.roleArn,
        ` --kubernetes-groups meshca && meshca access${kindFlags} | kubectl --context CLUSTER apply -f -`,
      ]),
    });
    new cdk.CfnOutput(this, 'ReconcileBusName', { value: this.bus.eventBusName });
    new cdk.CfnOutput(this, 'DefaultBusArn', {
      value: `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`,
      description: 'Member accounts forward their EKS events here (MeshcaMemberStack centralBusArn)',
    });
    new cdk.CfnOutput(this, 'EscrowKeyArn', { value: this.escrowKey.keyArn });

    for (const q of [eventsDlq, sweepDlq, workDlq]) {
      cdk.Validations.of(q).acknowledge({
        id: 'AwsSolutions-SQS3',
        reason: 'These queues are the dead-letter queues of the EventBridge targets and the work queue; a DLQ of a DLQ would only move the problem.',
      });
    }
  }

  /** Private CA: IssueCertificate with the PathLen0 template only, on the one CA. */
  private grantPca(caArns: string[], templateArn: string): void {
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'IssuePathLen0FromTheConfiguredCaOnly',
      actions: ['acm-pca:IssueCertificate'],
      resources: caArns,
      conditions: { StringEquals: { 'acm-pca:TemplateArn': templateArn } },
    }));
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'ReadAndRevokeOnTheConfiguredCa',
      actions: ['acm-pca:GetCertificate', 'acm-pca:DescribeCertificateAuthority', 'acm-pca:GetCertificateAuthorityCertificate', 'acm-pca:RevokeCertificate'],
      resources: caArns,
    }));
  }

  /** TSB's XCP identities: IssueCertificate with the end-entity template only, on their CA; and
   * reading and revoking on it when it is not the intermediates' CA. */
  private grantXcp(caArn: string, templateArn: string, ownCa: boolean): void {
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'IssueXcpIdentitiesWithTheEndEntityTemplateOnly',
      actions: ['acm-pca:IssueCertificate'],
      resources: [caArn],
      conditions: { StringEquals: { 'acm-pca:TemplateArn': templateArn } },
    }));
    if (ownCa) {
      this.role.addToPolicy(new iam.PolicyStatement({
        sid: 'ReadAndRevokeOnTheXcpCa',
        actions: ['acm-pca:GetCertificate', 'acm-pca:DescribeCertificateAuthority', 'acm-pca:GetCertificateAuthorityCertificate', 'acm-pca:RevokeCertificate'],
        resources: [caArn],
      }));
    }
  }

  /** A CA in another account reached through a role there: that role alone may be assumed for it. */
  private grantCaRole(roleArn: string, caAccount: string | undefined): void {
    const r = cdk.Arn.split(roleArn, cdk.ArnFormat.SLASH_RESOURCE_NAME);
    if (r.service !== 'iam' || r.resource !== 'role') throw new Error(`caRoleArn ${roleArn} is not an IAM role ARN`);
    if (caAccount === undefined) throw new Error('caRoleArn needs caArn: it is the role Private CA is called as');
    if (r.account !== caAccount) throw new Error(`caRoleArn ${roleArn} is not a role of the CA's account ${caAccount}`);
    this.role.addToPolicy(new iam.PolicyStatement({ sid: 'AssumeTheCaAccountRoleOnly', actions: ['sts:AssumeRole'], resources: [roleArn] }));
  }

  /** Vault AppRole: the one secret holding the secret id, read-only. */
  private grantVaultSecretId(secretIdArn: string): void {
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'ReadTheVaultSecretIdOnly',
      actions: ['secretsmanager:GetSecretValue'],
      resources: [secretIdArn],
    }));
  }

  /** Forwarded EKS events from the member accounts (or the organisation) onto the default bus,
   * where the EksCreateDelete rule takes them; nothing else may put events there from outside. */
  private acceptMemberEvents(members: Member[], organizationId?: string): void {
    const defaultBus = `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`;
    new events.CfnEventBusPolicy(this, 'MemberEvents', {
      eventBusName: 'default',
      statementId: 'MeshcaMemberAccountsForwardEksEvents',
      statement: organizationId
        ? { Effect: 'Allow', Principal: '*', Action: 'events:PutEvents', Resource: defaultBus, Condition: { StringEquals: { 'aws:PrincipalOrgID': organizationId } } }
        : { Effect: 'Allow', Principal: { AWS: members.map((m) => `arn:${this.partition}:iam::${m.account}:root`) }, Action: 'events:PutEvents', Resource: defaultBus },
    });
  }

  /** The security account may put `meshca Revoke Requested` events, and nothing else, on the
   * default bus. */
  private acceptRevokeRequests(security: string, members: Member[]): void {
    if (!/^\d{12}$/.test(security)) throw new Error(`securityAccount: ${security} is not a 12-digit account id`);
    if (security === this.account) throw new Error(`securityAccount: ${security} is this stack's own account, which may revoke anyway`);
    if (members.some((m) => m.account === security)) throw new Error(`securityAccount: ${security} is a member account, and a member can never revoke`);
    const defaultBus = `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`;
    new events.CfnEventBusPolicy(this, 'SecurityAccountRevokes', {
      eventBusName: 'default',
      statementId: 'MeshcaSecurityAccountRevokes',
      statement: {
        Effect: 'Allow', Principal: { AWS: `arn:${this.partition}:iam::${security}:root` }, Action: 'events:PutEvents', Resource: defaultBus,
        Condition: { StringEquals: { 'events:source': 'meshca', 'events:detail-type': 'meshca Revoke Requested' } },
      },
    });
  }

  /** Exactly the calls meshca makes, each on the narrowest resource the service allows. */
  private grantMeshca(regions: string[], members: Member[], secretPrefix?: string): void {
    const { partition, account } = this;
    // A custom prefix holds every region's records (members' under <prefix>/<account>/<region>).
    const prefixes = (region: string) => (secretPrefix ? [secretPrefix] : [`meshca/${region}`]);
    const memberSecrets = secretPrefix ? [] : members.flatMap((m) => m.regions.map((r) => `arn:${partition}:secretsmanager:${r}:${account}:secret:meshca/${m.account}/${r}/*`));
    const memberRegions = [...new Set(members.flatMap((m) => m.regions))].filter((r) => !regions.includes(r));
    const homeSecrets = [...regions, ...(secretPrefix ? memberRegions : [])]
      .flatMap((r) => prefixes(r).map((p) => `arn:${partition}:secretsmanager:${r}:${account}:secret:${p}/*`));
    const secrets = [...homeSecrets, ...memberSecrets];
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'EscrowUnderTheMeshcaPrefix',
      actions: ['secretsmanager:CreateSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue',
        'secretsmanager:UpdateSecretVersionStage', 'secretsmanager:DeleteSecret', 'secretsmanager:TagResource',
        'secretsmanager:UntagResource', 'secretsmanager:DescribeSecret'],
      resources: secrets,
    }));
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'DescribeClusters',
      actions: ['eks:DescribeCluster'],
      resources: regions.map((r) => `arn:${partition}:eks:${r}:${account}:cluster/*`),
    }));
    // Listing calls have no resource type. The sweep lists opted-in clusters by tag and reads
    // escrow summaries 100 secrets a call, describing and reading only what needs a closer look.
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'ListClusters',
      actions: ['eks:ListClusters', 'tag:GetResources', 'secretsmanager:ListSecrets'],
      resources: ['*'],
    }));
    if (members.length > 0) {
      this.role.addToPolicy(new iam.PolicyStatement({
        sid: 'AssumeTheMemberRolesOnly',
        actions: ['sts:AssumeRole'],
        resources: members.map((m) => m.roleArn),
      }));
    }
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'FanOutOnTheWorkQueueOnly',
      actions: ['sqs:SendMessage'],
      resources: [this.workQueue.queueArn],
    }));
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'ConsumeTheWorkQueueOnly',
      actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes'],
      resources: [this.workQueue.queueArn],
    }));
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'WorkQueueKeyThroughSqsOnly',
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resources: [this.escrowKey.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `sqs.${this.region}.amazonaws.com` } },
    }));
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'FanOutOnTheMeshcaBusOnly',
      actions: ['events:PutEvents'],
      resources: [this.bus.eventBusArn],
    }));
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'EscrowKeyThroughSecretsManagerOnly',
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resources: [this.escrowKey.keyArn],
      // A KMS key serves its own region: escrow in other managed regions uses the AWS-managed key.
      conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${this.region}.amazonaws.com` } },
    }));
    // Wildcards only where the service allows nothing narrower.
    const justified: Record<string, string> = {
      'Resource::*': 'eks:ListClusters, tag:GetResources and secretsmanager:ListSecrets have no resource type: they cannot be scoped.',
    };
    // Findings name resolved values literally and unresolved ones as <AWS::...>.
    const shown = (v: string, name: string) => (cdk.Token.isUnresolved(v) ? `<AWS::${name}>` : v);
    const [p, a] = [shown(this.partition, 'Partition'), shown(this.account, 'AccountId')];
    for (const region of [...regions, ...(secretPrefix ? memberRegions : [])]) {
      const r = shown(region, 'Region');
      for (const prefix of prefixes(r)) {
        justified[`Resource::arn:${p}:secretsmanager:${r}:${a}:secret:${prefix}/*`] =
          'One escrow secret per cluster, created at run time under the escrow prefix (Secrets Manager appends a random suffix to every ARN).';
      }
      justified[`Resource::arn:${p}:eks:${r}:${a}:cluster/*`] =
        'Clusters created after deployment must be describable; the opt-in tag, not the policy, selects which ones meshca manages.';
    }
    for (const m of members) {
      for (const region of m.regions) {
        const r = shown(region, 'Region');
        justified[`Resource::arn:${p}:secretsmanager:${r}:${a}:secret:meshca/${m.account}/${r}/*`] =
          'One escrow secret per member cluster, created at run time under meshca/<account>/<region>/ in this account.';
      }
    }
    for (const [finding, reason] of Object.entries(justified)) {
      cdk.Validations.of(this.role).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
    }
  }

  /** One page for the fleet. Per-cluster detail (days left, outcome, renewals, failures by
   * account, region and cluster) comes from the functions' log lines through Logs Insights: as
   * metrics it would be a billed series per cluster (docs/cost.md). The graphs are fleet totals. */
  private dashboard(logGroups: Record<string, logs.LogGroup>): void {
    const hour = cdk.Duration.hours(1);
    const fleet = (metric: string, stat: string) => new cloudwatch.Metric({ namespace: 'meshca', metricName: metric, statistic: stat, period: hour });
    const logGroupNames = Object.values(logGroups).map((g) => g.logGroupName);
    const perCluster = (title: string, queryLines: string[]) => new cloudwatch.LogQueryWidget({
      title, logGroupNames, queryLines, view: cloudwatch.LogQueryVisualizationType.TABLE, width: 24, height: 8,
    });
    const board = new cloudwatch.Dashboard(this, 'Fleet', {
      dashboardName: `${this.stackName}-fleet`,
      widgets: [
        [perCluster('Days left per cluster, soonest first (account, region, cluster)', PER_CLUSTER_QUERY)],
        [perCluster('Failed reconciles per cluster', FAILURES_QUERY)],
        [
          new cloudwatch.GraphWidget({ title: 'Renewals and failures in the fleet', left: [fleet('Renewals', 'Sum'), fleet('Failures', 'Sum')], width: 12 }),
          new cloudwatch.GraphWidget({ title: 'IssueCertificate calls throttled by PCA', left: [fleet('IssueThrottled', 'Sum')], width: 12 }),
        ],
        [
          new cloudwatch.GraphWidget({ title: 'Sweep: clusters checked, renewed, failed', left: [fleet('ClustersChecked', 'Maximum'), fleet('ClustersRenewed', 'Sum'), fleet('ClustersFailed', 'Sum')], width: 12 }),
          new cloudwatch.SingleValueWidget({ title: 'Soonest days left in the fleet', metrics: [fleet('SoonestDaysLeft', 'Minimum')], width: 12 }),
        ],
      ],
    });
    new cdk.CfnOutput(this, 'DashboardName', { value: board.dashboardName, description: 'CloudWatch dashboard of the fleet' });
  }

  /** The CRL buckets, checked; in CRL mode the role may read their objects, nothing else of S3. */
  private crlBucketsOf(props: MeshcaProps): string[] {
    const buckets = props.crlBuckets ?? [];
    for (const b of buckets) {
      if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(b)) throw new Error(`crlBuckets: ${JSON.stringify(b)} is not an S3 bucket name`);
    }
    if (!props.crlMode) {
      if (buckets.length > 0) throw new Error('crlBuckets is given but crlMode is not true');
      if (props.rootCrls?.length) throw new Error('rootCrls is given but crlMode is not true');
      return buckets;
    }
    if (props.caArn && buckets.length === 0) {
      throw new Error('crlMode with a Private CA reads its CRLs from S3: name the buckets of the CAs\' CrlConfiguration in crlBuckets');
    }
    for (const u of props.rootCrls ?? []) {
      const m = /^s3:\/\/([^/]+)\/.+$/.exec(u);
      if (!m || !buckets.includes(m[1])) throw new Error(`rootCrls: ${JSON.stringify(u)} is not s3://BUCKET/KEY in a bucket of crlBuckets`);
    }
    if (props.caArn) {
      // A revocation finds generations issued before meshca kept a ledger in the CA's audit
      // report, which PCA writes into the bucket of its CRL configuration.
      this.role.addToPolicy(new iam.PolicyStatement({
        sid: 'ListWhatTheCaIssuedByAuditReport',
        actions: ['acm-pca:CreateCertificateAuthorityAuditReport', 'acm-pca:DescribeCertificateAuthorityAuditReport'],
        resources: [props.caArn, ...(props.rotationCaArns ?? [])],
      }));
    }
    if (buckets.length > 0) {
      this.role.addToPolicy(new iam.PolicyStatement({
        sid: 'ReadTheCaCrlsOnly',
        actions: ['s3:GetObject'],
        resources: buckets.map((b) => `arn:${this.partition}:s3:::${b}/*`),
      }));
    }
    return buckets;
  }

  /** CRL mode's alarms: the fleet's first CRL lapsing soon (past it, every proxy holding the
   * CRLs refuses every peer), and clusters the sweep could not give the CRLs. */
  private crlAlarms(sweepEvery: cdk.Duration): void {
    const topic = this.node.findChild('Alarms') as sns.Topic;
    const notify = new actions.SnsAction(topic);
    const period = cdk.Duration.minutes(Math.min(sweepEvery.toMinutes(), 24 * 60));
    new cloudwatch.Alarm(this, 'CrlDaysLeft', {
      alarmDescription: 'The fleet\'s first CRL lapses within 2 days: past it, every proxy holding the CRLs refuses every peer. Runbook: docs/alarms/crl-days-left.md',
      metric: new cloudwatch.Metric({ namespace: 'meshca', metricName: 'CrlDaysLeft', period, statistic: 'Minimum' }),
      threshold: 2,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    }).addAlarmAction(notify);
    new cloudwatch.Alarm(this, 'CrlFailures', {
      alarmDescription: 'The sweep could not give every istio cluster the fleet\'s CRLs (or could not build them). Runbook: docs/alarms/crl-failures.md',
      metric: new cloudwatch.Metric({ namespace: 'meshca', metricName: 'CrlFailures', period, statistic: 'Maximum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }).addAlarmAction(notify);
  }

  private alarms(daysLeft: number, dlqs: Record<string, sqs.Queue>, sweepEvery: cdk.Duration, rotationStuckAfterHours: number): void {
    const topic = new sns.Topic(this, 'Alarms', { displayName: 'meshca alarms', masterKey: this.escrowKey, enforceSSL: true });
    this.escrowKey.grantEncryptDecrypt(new iam.ServicePrincipal('cloudwatch.amazonaws.com'));
    const notify = new actions.SnsAction(topic);
    // Every alarm names its page in docs/alarms/: what it means, where to look, how to redrive.
    const alarm = (id: string, page: string, props: cloudwatch.AlarmProps) => new cloudwatch.Alarm(this, id, {
      ...props,
      alarmDescription: `${props.alarmDescription} Runbook: docs/alarms/${page}.md`,
    }).addAlarmAction(notify);
    const atLeastOne = {
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };

    for (const [name, f] of this.functions()) {
      alarm(`${name}Errors`, 'function-errors', {
        alarmDescription: `meshca ${name} failed invocations (a reconcile that failed, or bad configuration).`,
        metric: f.metricErrors({ period: cdk.Duration.minutes(5), statistic: 'Sum' }),
        ...atLeastOne,
      });
    }
    for (const [name, q] of Object.entries(dlqs)) {
      alarm(`DeadLetters${name}`, 'dead-letters', {
        alarmDescription: `meshca ${name}: messages that could not be handled after retries wait in its dead-letter queue.`,
        metric: q.metricApproximateNumberOfMessagesVisible({ period: cdk.Duration.minutes(5), statistic: 'Maximum' }),
        ...atLeastOne,
      });
    }
    alarm('ClustersFailed', 'clusters-failed', {
      alarmDescription: 'The expiry sweep reported clusters it could not renew, repair or hand on.',
      metric: new cloudwatch.Metric({ namespace: 'meshca', metricName: 'ClustersFailed', period: cdk.Duration.minutes(Math.min(sweepEvery.toMinutes(), 24 * 60)), statistic: 'Maximum' }),
      ...atLeastOne,
    });
    alarm('SoonestDaysLeft', 'soonest-days-left', {
      alarmDescription: `A cluster's Istio intermediate CA has under ${daysLeft} days left (meshca could not renew it).`,
      metric: new cloudwatch.Metric({ namespace: 'meshca', metricName: 'SoonestDaysLeft', period: cdk.Duration.hours(1), statistic: 'Minimum' }),
      threshold: daysLeft,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('SweepNotRunning', 'sweep-not-running', {
      alarmDescription: 'The meshca expiry sweep missed three scheduled runs.',
      metric: this.expirySweep.metricInvocations({ period: cdk.Duration.minutes(Math.min(3 * sweepEvery.toMinutes(), 24 * 60)), statistic: 'Sum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm('RootRotationStuck', 'root-rotation-stuck', {
      alarmDescription: `A root rotation has stood in one phase for over ${rotationStuckAfterHours} h: see the sweep's blockers (meshca rotate-root status).`,
      metric: new cloudwatch.Metric({ namespace: 'meshca', metricName: 'RotationPhaseAgeSeconds', period: cdk.Duration.hours(1), statistic: 'Maximum' }),
      threshold: rotationStuckAfterHours * 3600,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    new cdk.CfnOutput(this, 'AlarmTopicArn', { value: topic.topicArn, description: 'Subscribe to be told when meshca needs a human' });
  }

  /** The three functions by name. */
  private functions(): [string, lambda.Function][] {
    return [['ClusterEvents', this.clusterEvents], ['ExpirySweep', this.expirySweep], ['RenewalWorker', this.renewalWorker]];
  }

  /** Where to look when something fails: every function, log group and dead-letter queue. */
  private whereToLook(logGroups: Record<string, logs.LogGroup>, dlqs: Record<string, sqs.Queue>): void {
    for (const [name, f] of this.functions()) {
      new cdk.CfnOutput(this, `${name}Function`, { value: f.functionName, description: `The ${name} function` });
      new cdk.CfnOutput(this, `${name}LogGroup`, { value: logGroups[name].logGroupName, description: `Logs of ${name} (JSON lines: cluster, step, outcome)` });
    }
    for (const [name, q] of Object.entries(dlqs)) {
      new cdk.CfnOutput(this, `${name}DeadLetterQueueUrl`, { value: q.queueUrl, description: `Dead letters of ${name}: docs/alarms/dead-letters.md says how to redrive them` });
    }
    new cdk.CfnOutput(this, 'WorkQueueUrl', { value: this.workQueue.queueUrl, description: 'The work queue renewal-worker consumes' });
  }
}

/** A member account, resolved: its role's ARN and its regions. */
interface Member {
  readonly account: string;
  readonly roleArn: string;
  readonly regions: string[];
  readonly externalId?: string;
}

function memberAccountsOf(props: MeshcaProps, regions: string[], partition: string): Member[] {
  const seen = new Set<string>();
  if (props.organizationId !== undefined && !/^o-[a-z0-9]{10,32}$/.test(props.organizationId)) {
    throw new Error(`organizationId ${props.organizationId} is not an AWS Organizations id (o-…)`);
  }
  if (props.organizationId && !(props.memberAccounts ?? []).length) throw new Error('organizationId needs memberAccounts: the functions act for listed accounts only');
  return (props.memberAccounts ?? []).map((m) => {
    if (!/^\d{12}$/.test(m.account)) throw new Error(`memberAccounts: ${m.account} is not a 12-digit account id`);
    if (seen.has(m.account)) throw new Error(`memberAccounts: ${m.account} is listed twice`);
    seen.add(m.account);
    const roleName = m.roleName ?? 'meshca-member';
    if (!/^[\w+=,.@-]{1,64}$/.test(roleName)) throw new Error(`memberAccounts: ${roleName} is not an IAM role name`);
    return { account: m.account, roleArn: `arn:${partition}:iam::${m.account}:role/${roleName}`, regions: m.regions?.length ? m.regions : regions, externalId: m.externalId };
  });
}

/** The checkout whose Cargo.toml builds the functions: given, or the one this file is in. */
function workspaceOf(given: string | undefined): string {
  const dir = path.resolve(given ?? path.join(__dirname, '..', '..', '..', '..'));
  if (!fs.existsSync(path.join(dir, 'Cargo.toml')) || !fs.existsSync(path.join(dir, 'functions', 'cluster-events'))) {
    throw new Error(`${dir} is not a meshca checkout (no Cargo.toml with functions/): ` +
      (given ? 'fix workspaceDir / -c meshca:workspace' : 'this CDK app is outside its checkout; name it with -c meshca:workspace=/path/to/meshca'));
  }
  return dir;
}

function checkVault(v: MeshcaVaultProps): void {
  if (!/^https?:\/\//.test(v.addr)) throw new Error(`vault.addr ${v.addr} is not an http(s) URL`);
  const appRole = v.roleId !== undefined || v.secretIdArn !== undefined;
  if (appRole === (v.awsRole !== undefined)) {
    throw new Error('vault: give either roleId and secretIdArn (AppRole) or awsRole (AWS IAM login)');
  }
  if (appRole && (!v.roleId || !v.secretIdArn)) throw new Error('vault: AppRole needs both roleId and secretIdArn');
  if (v.secretIdArn) {
    const a = cdk.Arn.split(v.secretIdArn, cdk.ArnFormat.COLON_RESOURCE_NAME);
    if (a.service !== 'secretsmanager' || a.resource !== 'secret') throw new Error(`vault.secretIdArn ${v.secretIdArn} is not a Secrets Manager secret ARN`);
  }
}

/** The functions' MESHCA_VAULT_* variables (docs/authorities.md, "Issuing from Vault / OpenBao"). */
function vaultEnvironment(v: MeshcaVaultProps): Record<string, string> {
  const env: Record<string, string> = { MESHCA_AUTHORITY: 'vault', MESHCA_VAULT_ADDR: v.addr, MESHCA_VAULT_MOUNT: v.mount ?? 'pki' };
  if (v.issuer) env.MESHCA_VAULT_ISSUER = v.issuer;
  if (v.namespace) env.MESHCA_VAULT_NAMESPACE = v.namespace;
  if (v.caCertPem) env.MESHCA_VAULT_CACERT = v.caCertPem;
  if (v.authMount) env.MESHCA_VAULT_AUTH_MOUNT = v.authMount;
  if (v.awsRole) {
    env.MESHCA_VAULT_AUTH = 'aws-iam';
    env.MESHCA_VAULT_AWS_ROLE = v.awsRole;
    if (v.awsStsRegion) env.MESHCA_VAULT_AWS_STS_REGION = v.awsStsRegion;
    if (v.awsServerId) env.MESHCA_VAULT_AWS_SERVER_ID = v.awsServerId;
  } else {
    env.MESHCA_VAULT_AUTH = 'approle';
    env.MESHCA_VAULT_ROLE_ID = v.roleId!;
    env.MESHCA_VAULT_SECRET_ID_ARN = v.secretIdArn!;
  }
  return env;
}
