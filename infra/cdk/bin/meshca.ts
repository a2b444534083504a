#!/usr/bin/env node
// The CDK app: `cdk synth|deploy -c meshca:caArn=<CA ARN> [-c meshca:regions=eu-west-1,us-east-1] ...`
// with every AwsSolutions (cdk-nag) rule applied; a finding without a justified suppression fails synth.
//
// MESHCA_SKIP_BUNDLING=1 synthesises without building the Rust functions (offline checks, CI);
// the template is the same, only the code assets are placeholders. Deploy without it.

import * as cdk from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { MeshcaStack, propsFromContext } from '../lib/meshca-stack';

const skipBundling = process.env.MESHCA_SKIP_BUNDLING === '1';
const app = new cdk.App(skipBundling ? { postCliContext: { 'aws:cdk:bundling-stacks': [] } } : {});
new MeshcaStack(app, app.node.tryGetContext('meshca:stackName') ?? 'Meshca', {
  ...propsFromContext(app),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: 'meshca: per-cluster Istio intermediate CAs from AWS Private CA',
});
cdk.Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
