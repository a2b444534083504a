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
import * as path from 'path';

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
  /** Where the functions' artifacts come from; default: built from the workspace by cargo-lambda-cdk. */
  readonly workspaceDir?: string;
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
        roleId: ctx('vaultRoleId'), secretIdArn: ctx('vaultSecretIdArn'), awsRole: ctx('vaultAwsRole') }
    : undefined;
  const xcpIdentities = ctx('xcpIdentities');
  if (xcpIdentities !== undefined && xcpIdentities !== 'true' && xcpIdentities !== 'false') {
    throw new Error(`context meshca:xcpIdentities: ${JSON.stringify(xcpIdentities)} is not true or false`);
  }
  return {
    caArn,
    caRoleArn: ctx('caRoleArn'),
    caExternalId: ctx('caExternalId'),
    vault,
    xcpIdentities: xcpIdentities === 'true',
    xcpCaArn: ctx('xcpCaArn'),
    rotationCaArns: ctx('rotationCaArns')?.split(',').map((a) => a.trim()).filter((a) => a.length > 0),
    rotationStuckAfterHours: num('rotationStuckAfterHours'),
    templateArn: ctx('templateArn'),
    regions: ctx('regions')?.split(',').map((r) => r.trim()).filter((r) => r.length > 0),
    memberAccounts: ctx('memberAccounts')?.split(',').map((a) => a.trim()).filter((a) => a.length > 0).map((account) => ({ account })),
    organizationId: ctx('organizationId'),
    tagKey: ctx('tagKey'),
    tagValue: ctx('tagValue'),
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
    const workspace = props.workspaceDir ?? path.join(__dirname, '..', '..', '..', '..');

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
    this.grantMeshca(regions, members);
    if (members.length > 0) this.acceptMemberEvents(members, props.organizationId);

    const env: Record<string, string> = {
      ...(props.caArn && templateArn ? { MESHCA_CA_ARN: props.caArn, MESHCA_TEMPLATE_ARN: templateArn } : {}),
      ...(props.xcpCaArn ? { MESHCA_XCP_CA_ARN: props.xcpCaArn } : {}),
      ...(props.caRoleArn ? { MESHCA_CA_ROLE_ARN: props.caRoleArn } : {}),
      ...(props.caExternalId ? { MESHCA_CA_EXTERNAL_ID: props.caExternalId } : {}),
      ...(props.vault ? vaultEnvironment(props.vault) : {}),
      MESHCA_REGIONS: regions.join(','),
      MESHCA_TAG_KEY: props.tagKey ?? 'meshca.io/enabled',
      MESHCA_TAG_VALUE: props.tagValue ?? 'true',
      MESHCA_VALIDITY_DAYS: String(validityDays),
      MESHCA_KMS_KEY_ID: this.escrowKey.keyArn,
      MESHCA_EVENT_BUS: this.bus.eventBusName,
      MESHCA_WORK_QUEUE_URL: this.workQueue.queueUrl,
      MESHCA_SWEEP_MINUTES: String(sweepEvery.toMinutes()),
      // Healthy clusters' secrets are read back about once per verifyEvery (default a day).
      MESHCA_VERIFY_EVERY: String(Math.max(1, Math.round((props.verifyEvery ?? cdk.Duration.days(1)).toMinutes() / sweepEvery.toMinutes()))),
      ...(members.length > 0 ? { MESHCA_ACCOUNTS: JSON.stringify(members.map((m) => ({
        account: m.account, role: m.roleArn, regions: m.regions, ...(m.externalId ? { externalId: m.externalId } : {}),
      }))) } : {}),
    };
    if (props.renewBeforeDays !== undefined) env.MESHCA_RENEW_BEFORE_DAYS = String(props.renewBeforeDays);

    const retention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    const binaries: Record<string, string> = { ClusterEvents: 'cluster-events', ExpirySweep: 'expiry-sweep', RenewalWorker: 'renewal-worker' };
    const fn = (name: string, description: string, memorySize: number, own: Record<string, string> = {}): lambda.Function => {
      const logGroup = new logs.LogGroup(this, `${name}Logs`, { retention, encryptionKey: this.escrowKey, removalPolicy: cdk.RemovalPolicy.DESTROY });
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
        bundling: { cargoLambdaFlags: ['--locked'] },
      });
      f.node.defaultChild && (f.node.defaultChild as cdk.CfnResource).addMetadata('checkov', {
        skip: [
          { id: 'CKV_AWS_116', comment: 'Invoked by EventBridge or the work queue only; each rule target and the queue have their own retries and SQS dead-letter queue.' },
          { id: 'CKV_AWS_117', comment: 'Reaches public EKS API endpoints and AWS APIs; no VPC resource is accessed. Private-endpoint clusters need a VPC configuration (README).' },
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
    new events.Rule(this, 'Sweep', {
      description: 'meshca expiry sweep',
      schedule: events.Schedule.rate(sweepEvery),
      targets: [new targets.LambdaFunction(this.expirySweep, { deadLetterQueue: sweepDlq, retryAttempts: 2 })],
    });

    this.alarms(props.alarmDaysLeft ?? 7, [eventsDlq, sweepDlq, workDlq], sweepEvery, props.rotationStuckAfterHours ?? 72);
    this.dashboard();

    new cdk.CfnOutput(this, 'RoleArn', {
      value: this.role.roleArn,
      description: 'Grant this role access to each cluster: an EKS access entry with AmazonEKSEditPolicy scoped to namespace istio-system',
    });
    new cdk.CfnOutput(this, 'GrantClusterAccess', {
      description: 'Run per cluster (authentication mode API or API_AND_CONFIG_MAP; istio-system must exist for a namespace-scoped entry)',
      value: cdk.Fn.join('', [
        'aws eks create-access-entry --cluster-name CLUSTER --principal-arn ', this.role.roleArn,
        ' && aws eks associate-access-policy --cluster-name CLUSTER --principal-arn ', this.role.roleArn,
        ' --policy-arn arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy --access-scope type=namespace,namespaces=istio-system',
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

  /** Exactly the calls meshca makes, each on the narrowest resource the service allows. */
  private grantMeshca(regions: string[], members: Member[]): void {
    const { partition, account } = this;
    const memberSecrets = members.flatMap((m) => m.regions.map((r) => `arn:${partition}:secretsmanager:${r}:${account}:secret:meshca/${m.account}/${r}/*`));
    const secrets = [...regions.map((r) => `arn:${partition}:secretsmanager:${r}:${account}:secret:meshca/${r}/*`), ...memberSecrets];
    this.role.addToPolicy(new iam.PolicyStatement({
      sid: 'EscrowUnderTheMeshcaPrefix',
      actions: ['secretsmanager:CreateSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue',
        'secretsmanager:UpdateSecretVersionStage', 'secretsmanager:DeleteSecret', 'secretsmanager:TagResource'],
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
    for (const region of regions) {
      const r = shown(region, 'Region');
      justified[`Resource::arn:${p}:secretsmanager:${r}:${a}:secret:meshca/${r}/*`] =
        'One escrow secret per cluster, created at run time under meshca/<region>/ (Secrets Manager appends a random suffix to every ARN).';
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

  /** One page for the fleet: days left of every cluster by account and region, renewals,
   * failures, and IssueCertificate calls PCA throttled. */
  private dashboard(): void {
    const hour = cdk.Duration.hours(1);
    const search = (metric: string, stat: string, label: string) => new cloudwatch.MathExpression({
      expression: `SEARCH('{meshca,Account,Region,Cluster} MetricName="${metric}"', '${stat}', 3600)`,
      label,
      period: hour,
      usingMetrics: {},
    });
    const fleet = (metric: string, stat: string) => new cloudwatch.Metric({ namespace: 'meshca', metricName: metric, statistic: stat, period: hour });
    new cloudwatch.Dashboard(this, 'Fleet', {
      dashboardName: `${this.stackName}-fleet`,
      widgets: [
        [new cloudwatch.GraphWidget({ title: 'Days left per cluster (account, region, cluster)', left: [search('DaysLeft', 'Minimum', '')], width: 24, height: 8 })],
        [
          new cloudwatch.GraphWidget({ title: 'Renewals per cluster', left: [search('Renewals', 'Sum', '')], width: 8 }),
          new cloudwatch.GraphWidget({ title: 'Failures per cluster', left: [search('Failures', 'Sum', '')], width: 8 }),
          new cloudwatch.GraphWidget({ title: 'IssueCertificate calls throttled by PCA', left: [fleet('IssueThrottled', 'Sum')], width: 8 }),
        ],
        [
          new cloudwatch.GraphWidget({ title: 'Sweep: clusters checked, renewed, failed', left: [fleet('ClustersChecked', 'Maximum'), fleet('ClustersRenewed', 'Sum'), fleet('ClustersFailed', 'Sum')], width: 12 }),
          new cloudwatch.SingleValueWidget({ title: 'Soonest days left in the fleet', metrics: [fleet('SoonestDaysLeft', 'Minimum')], width: 12 }),
        ],
      ],
    });
  }

  private alarms(daysLeft: number, dlqs: sqs.Queue[], sweepEvery: cdk.Duration, rotationStuckAfterHours: number): void {
    const topic = new sns.Topic(this, 'Alarms', { displayName: 'meshca alarms', masterKey: this.escrowKey, enforceSSL: true });
    this.escrowKey.grantEncryptDecrypt(new iam.ServicePrincipal('cloudwatch.amazonaws.com'));
    const notify = new actions.SnsAction(topic);
    const alarm = (id: string, props: cloudwatch.AlarmProps) => new cloudwatch.Alarm(this, id, props).addAlarmAction(notify);

    for (const [name, f] of [['ClusterEvents', this.clusterEvents], ['ExpirySweep', this.expirySweep], ['RenewalWorker', this.renewalWorker]] as const) {
      alarm(`${name}Errors`, {
        alarmDescription: `meshca ${name} failed invocations (a reconcile that failed, or bad configuration)`,
        metric: f.metricErrors({ period: cdk.Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    dlqs.forEach((q, i) => alarm(`DeadLetters${i}`, {
      alarmDescription: 'meshca events that could not be delivered to a function after retries',
      metric: q.metricApproximateNumberOfMessagesVisible({ period: cdk.Duration.minutes(5), statistic: 'Maximum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }));
    alarm('SoonestDaysLeft', {
      alarmDescription: `A cluster's Istio intermediate CA has under ${daysLeft} days left (meshca could not renew it)`,
      metric: new cloudwatch.Metric({ namespace: 'meshca', metricName: 'SoonestDaysLeft', period: cdk.Duration.hours(1), statistic: 'Minimum' }),
      threshold: daysLeft,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('SweepNotRunning', {
      alarmDescription: 'The meshca expiry sweep missed three scheduled runs',
      metric: this.expirySweep.metricInvocations({ period: cdk.Duration.minutes(Math.min(3 * sweepEvery.toMinutes(), 24 * 60)), statistic: 'Sum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm('RootRotationStuck', {
      alarmDescription: `A root rotation has stood in one phase for over ${rotationStuckAfterHours} h: see the sweep's blockers (meshca rotate-root status)`,
      metric: new cloudwatch.Metric({ namespace: 'meshca', metricName: 'RotationPhaseAgeSeconds', period: cdk.Duration.hours(1), statistic: 'Maximum' }),
      threshold: rotationStuckAfterHours * 3600,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    new cdk.CfnOutput(this, 'AlarmTopicArn', { value: topic.topicArn, description: 'Subscribe to be told when meshca needs a human' });
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

/** The functions' MESHCA_VAULT_* variables (README, "Issuing from Vault / OpenBao"). */
function vaultEnvironment(v: MeshcaVaultProps): Record<string, string> {
  const env: Record<string, string> = { MESHCA_AUTHORITY: 'vault', MESHCA_VAULT_ADDR: v.addr, MESHCA_VAULT_MOUNT: v.mount ?? 'pki' };
  if (v.issuer) env.MESHCA_VAULT_ISSUER = v.issuer;
  if (v.namespace) env.MESHCA_VAULT_NAMESPACE = v.namespace;
  if (v.caCertPem) env.MESHCA_VAULT_CACERT = v.caCertPem;
  if (v.awsRole) {
    env.MESHCA_VAULT_AUTH = 'aws-iam';
    env.MESHCA_VAULT_AWS_ROLE = v.awsRole;
  } else {
    env.MESHCA_VAULT_AUTH = 'approle';
    env.MESHCA_VAULT_ROLE_ID = v.roleId!;
    env.MESHCA_VAULT_SECRET_ID_ARN = v.secretIdArn!;
  }
  return env;
}
