#!/usr/bin/env node
// The CDK app: `cdk synth|deploy -c meshca:caArn=<CA ARN> [-c meshca:regions=eu-west-1,us-east-1] ...`,
// or the member-account stack: `-c meshca:stack=member -c meshca:centralRoleArn=... -c meshca:centralBusArn=...`
// with every AwsSolutions (cdk-nag) rule applied; a finding without a justified suppression fails synth.
//
// MESHCA_SKIP_BUNDLING=1 synthesises without building the Rust functions (offline checks, CI);
// the template is the same, only the code assets are placeholders. Deploy without it.

import * as cdk from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { MeshcaMemberStack, memberPropsFromContext } from '../lib/meshca-member-stack';
import { MeshcaStack, propsFromContext } from '../lib/meshca-stack';

const skipBundling = process.env.MESHCA_SKIP_BUNDLING === '1';
const app = new cdk.App(skipBundling ? { postCliContext: { 'aws:cdk:bundling-stacks': [] } } : {});
const env = { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION };
// `-c meshca:stack=member` synthesises the member-account stack (StackSets roll it out).
if (app.node.tryGetContext('meshca:stack') === 'member') {
  new MeshcaMemberStack(app, app.node.tryGetContext('meshca:stackName') ?? 'MeshcaMember', {
    ...memberPropsFromContext(app),
    env,
    description: 'meshca member account: the role the central meshca assumes, and EKS events forwarded to it',
  });
} else {
  new MeshcaStack(app, app.node.tryGetContext('meshca:stackName') ?? 'Meshca', {
    ...propsFromContext(app),
    env,
    description: 'meshca: per-cluster Istio intermediate CAs from AWS Private CA',
  });
}
cdk.Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
