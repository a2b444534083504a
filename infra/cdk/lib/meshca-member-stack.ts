// What a member account needs so the central meshca can serve its clusters: a role meshca
// assumes (EKS read calls only, trusting the central function role alone) and a rule that
// forwards the account's EKS CreateCluster/DeleteCluster to the central default bus. Roll it out
// with CloudFormation StackSets: the role in one region (IAM is global), the rule in every region
// with clusters (`createRole: false` there).

import * as cdk from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

export interface MeshcaMemberProps extends cdk.StackProps {
  /** The central stack's function role (its RoleArn output): the only principal trusted. */
  readonly centralRoleArn: string;
  /** The central account's default event bus: arn:aws:events:<region>:<central>:event-bus/default. */
  readonly centralBusArn: string;
  /** The role's name (default meshca-member; the central stack's memberAccounts[].roleName). */
  readonly roleName?: string;
  /** Required in AssumeRole when set (the central stack's memberAccounts[].externalId). */
  readonly externalId?: string;
  /** Create the role here (default true); false in the stack instances of the other regions. */
  readonly createRole?: boolean;
}

/** Reads the props from CDK context (`-c meshca:centralRoleArn=...`). */
export function memberPropsFromContext(scope: Construct): MeshcaMemberProps {
  const ctx = (k: string): string | undefined => scope.node.tryGetContext(`meshca:${k}`);
  const centralRoleArn = ctx('centralRoleArn');
  const centralBusArn = ctx('centralBusArn');
  if (!centralRoleArn || !centralBusArn) {
    throw new Error('context meshca:centralRoleArn and meshca:centralBusArn are required for the member stack');
  }
  const createRole = ctx('createRole');
  if (createRole !== undefined && createRole !== 'true' && createRole !== 'false') {
    throw new Error(`context meshca:createRole: ${JSON.stringify(createRole)} is not true or false`);
  }
  return { centralRoleArn, centralBusArn, roleName: ctx('memberRoleName'), externalId: ctx('externalId'), createRole: createRole !== 'false' };
}

export class MeshcaMemberStack extends cdk.Stack {
  readonly role?: iam.Role;

  constructor(scope: Construct, id: string, props: MeshcaMemberProps) {
    // StackSets deploy this template into accounts CDK never bootstrapped: no BootstrapVersion
    // parameter or rule (the stack has no assets, so nothing else of the bootstrap is used).
    super(scope, id, { synthesizer: new cdk.DefaultStackSynthesizer({ generateBootstrapVersionRule: false }), ...props });
    const central = cdk.Arn.split(props.centralRoleArn, cdk.ArnFormat.SLASH_RESOURCE_NAME);
    if (central.service !== 'iam' || central.resource !== 'role') throw new Error(`centralRoleArn ${props.centralRoleArn} is not an IAM role ARN`);
    const bus = cdk.Arn.split(props.centralBusArn, cdk.ArnFormat.SLASH_RESOURCE_NAME);
    if (bus.service !== 'events' || bus.resource !== 'event-bus') throw new Error(`centralBusArn ${props.centralBusArn} is not an event bus ARN`);
    const roleName = props.roleName ?? 'meshca-member';

    if (props.createRole ?? true) {
      const principal = new iam.ArnPrincipal(props.centralRoleArn);
      this.role = new iam.Role(this, 'Role', {
        roleName,
        description: 'meshca (central account): list and describe EKS clusters; each cluster grants this role the RBAC of meshca access',
        assumedBy: props.externalId ? principal.withConditions({ StringEquals: { 'sts:ExternalId': props.externalId } }) : principal,
        maxSessionDuration: cdk.Duration.hours(1),
      });
      this.role.addToPolicy(new iam.PolicyStatement({ sid: 'ListClusters', actions: ['eks:ListClusters', 'tag:GetResources'], resources: ['*'] }));
      this.role.addToPolicy(new iam.PolicyStatement({
        sid: 'DescribeClusters',
        actions: ['eks:DescribeCluster'],
        resources: [`arn:${this.partition}:eks:*:${this.account}:cluster/*`],
      }));
      // Findings name resolved values literally and unresolved ones as <AWS::...>.
      const account = cdk.Token.isUnresolved(this.account) ? '<AWS::AccountId>' : this.account;
      const partition = cdk.Token.isUnresolved(this.partition) ? '<AWS::Partition>' : this.partition;
      cdk.Validations.of(this.role).acknowledge(
        { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'eks:ListClusters and tag:GetResources have no resource type: they cannot be scoped.' },
        { id: `AwsSolutions-IAM5[Resource::arn:${partition}:eks:*:${account}:cluster/*]`,
          reason: 'Clusters created after deployment must be describable; the opt-in tag, not the policy, selects which ones meshca manages.' },
      );
      new cdk.CfnOutput(this, 'MemberRoleArn', {
        value: this.role.roleArn,
        description: 'Give each cluster an access entry for this role (--kubernetes-groups meshca) and the RBAC `meshca access --kind ...` prints for its kinds',
      });
    }

    new events.Rule(this, 'ForwardEksCreateDelete', {
      description: 'meshca: this account\'s EKS CreateCluster/DeleteCluster, forwarded to the central account',
      eventPattern: {
        source: ['aws.eks'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: { eventSource: ['eks.amazonaws.com'], eventName: ['CreateCluster', 'DeleteCluster'] },
      },
      targets: [new targets.EventBus(events.EventBus.fromEventBusArn(this, 'CentralBus', props.centralBusArn))],
    });
  }
}
