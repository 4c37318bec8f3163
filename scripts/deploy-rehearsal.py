#!/usr/bin/env python3
"""A deploy rehearsal without AWS: infra/template.yaml through SAM's own transform (samtranslator,
the code CloudFormation runs for `Transform: AWS::Serverless-2016-10-31`), then the checks a
deploy would otherwise fail on, or deploy something that does not work:

  1. every parameter has a default (a plain `sam deploy` asks for nothing);
  2. every Ref, GetAtt, Sub variable and DependsOn names a parameter, a pseudo parameter or a
     resource of the transformed template; every condition used is defined;
  3. every route of the HTTP API (the generated OpenAPI body) integrates a function of the
     template, and each such function has a Lambda permission for the API;
  4. every function has a role of the template, its log group, the environment its FromEnv reads
     (checked in tests/tests/template_matches.rs) referring to resources that exist, and, for
     each environment variable that names a queue, the bus or the table, the IAM actions its code
     needs on that very resource (sqs:SendMessage, events:PutEvents, dynamodb:GetItem).

  5. with --moto URL: the transformed template created as a stack by moto's CloudFormation (the
     code uploaded to moto's S3 first): every resource must reach CREATE_COMPLETE. That proves
     the resources are creatable in dependency order (no cycle, no missing property moto
     checks); not IAM's semantics, nor API Gateway's or Lambda's behaviour (moto runs neither).

Usage: python3 scripts/deploy-rehearsal.py [--moto URL] [infra/template.yaml]
(exits non-zero on a problem). Needs samtranslator (installed with aws-sam-cli in .local/venv by
scripts/infra-check.sh) and, for --moto, boto3 (moto's own dependency).
"""

import copy
import json
import os
import re
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PSEUDO = {
    "AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region",
    "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}

# Environment variable -> (resource type it must name, IAM action the function needs on it).
NEEDS = {
    "PUSH_QUEUE_URL": ("AWS::SQS::Queue", "sqs:SendMessage"),
    "SMS_QUEUE_URL": ("AWS::SQS::Queue", "sqs:SendMessage"),
    "PUSH_DEAD_LETTER_QUEUE_URL": ("AWS::SQS::Queue", "sqs:SendMessage"),
    "SMS_DEAD_LETTER_QUEUE_URL": ("AWS::SQS::Queue", "sqs:SendMessage"),
    "EVENT_BUS_NAME": ("AWS::Events::EventBus", "events:PutEvents"),
    "TABLE_NAME": ("AWS::DynamoDB::Table", "dynamodb:GetItem"),
}


class ManagedPolicies:
    """The AWS managed policies SAM may attach, by name (no IAM call: offline)."""

    def load(self):
        names = ["AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSXRayDaemonWriteAccess",
                 "AWSLambdaDynamoDBExecutionRole", "AWSLambdaSQSQueueExecutionRole"]
        return {n: f"arn:aws:iam::aws:policy/service-role/{n}" for n in names}


def transformed(path):
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            # What `sam deploy` puts there after uploading the built code.
            resource["Properties"]["CodeUri"] = "s3://rehearsal-bucket/code.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    params = {name: p.get("Default", "") for name, p in template.get("Parameters", {}).items()}
    return template, transform(copy.deepcopy(template), params, ManagedPolicies())


def walk(value, visit, path="$"):
    visit(value, path)
    if isinstance(value, dict):
        for k, v in value.items():
            walk(v, visit, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            walk(v, visit, f"{path}[{i}]")


def without_function_urls(out):
    """moto's CloudFormation does not model AWS::Lambda::Url (its GetAtt fails the whole stack):
    the URL resources are left out and `!GetAtt <url>.FunctionUrl` becomes a literal URL. cfn-lint
    and `sam validate --lint` check them instead."""
    import copy

    out = copy.deepcopy(out)
    urls = {k for k, r in out["Resources"].items() if r.get("Type") == "AWS::Lambda::Url"}
    for k in urls:
        del out["Resources"][k]

    def strip(value):
        if isinstance(value, dict):
            attr = value.get("Fn::GetAtt")
            if isinstance(attr, list) and attr and attr[0] in urls:
                return f"https://{attr[0].lower()}.lambda-url.us-east-1.on.aws/"
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out = strip(out)
    for resource in out["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in urls]
        elif depends in urls:
            del resource["DependsOn"]
    if urls:
        print(f"moto CloudFormation: {sorted(urls)} left out (moto does not model function URLs)")
    return out


def moto_stack(out, endpoint, problems):
    """Creates the transformed template as a stack in moto; a problem per resource not created."""
    import io
    import json
    import time
    import zipfile

    import boto3

    out = without_function_urls(out)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="rehearsal-bucket")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket="rehearsal-bucket", Key="code.zip", Body=code.getvalue())
    cfn = boto3.client("cloudformation", endpoint_url=endpoint)
    name = f"rehearsal-{int(time.time())}"
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(out), Capabilities=["CAPABILITY_IAM"])
    for _ in range(120):
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(1)
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    created = [r for r in summaries if r["ResourceStatus"] == "CREATE_COMPLETE"]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        problems.append(f"moto: stack {stack['StackStatus']}: {stack.get('StackStatusReason')}")
    for r in summaries:
        if r["ResourceStatus"] != "CREATE_COMPLETE":
            problems.append(f"moto: {r['LogicalResourceId']} ({r['ResourceType']}) {r['ResourceStatus']}")
    # moto lists some resources (alarms, the HTTP API and its stage, …) without their logical id:
    # those are matched by count.
    listed = {r["LogicalResourceId"] for r in summaries if r["LogicalResourceId"]}
    unnamed = sum(1 for r in summaries if not r["LogicalResourceId"])
    missing = set(out["Resources"]) - listed
    if len(missing) > unnamed:
        problems.append(f"moto: {len(missing) - unnamed} resources not created among {sorted(missing)}")
    print(f"moto CloudFormation: stack {stack['StackStatus']}, {len(created)} of {len(out['Resources'])} "
          f"resources created ({unnamed} listed by moto without their logical id)")


def main():
    args = sys.argv[1:]
    moto = None
    if args[:1] == ["--moto"]:
        moto, args = args[1], args[2:]
    path = args[0] if args else "infra/template.yaml"
    source, out = transformed(path)
    problems = []
    resources = out["Resources"]
    parameters = set(out.get("Parameters", {}))
    conditions = set(out.get("Conditions", {}))
    names = parameters | PSEUDO | set(resources)

    # 1. Defaults.
    for name, p in source.get("Parameters", {}).items():
        if "Default" not in p:
            problems.append(f"parameter {name} has no default: a plain `sam deploy` would ask for it")

    # 2. References.
    def visit(value, where):
        if not isinstance(value, dict) or len(value) != 1:
            return
        (key, arg), = value.items()
        if key == "Ref" and isinstance(arg, str) and arg not in names:
            problems.append(f"{where}: Ref {arg} names nothing")
        elif key == "Fn::GetAtt":
            target = arg[0] if isinstance(arg, list) else str(arg).split(".")[0]
            if target not in resources:
                problems.append(f"{where}: GetAtt {target} names no resource")
        elif key == "Fn::Sub":
            text, local = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
            for var in re.findall(r"\$\{([^}!]+)\}", text):
                base = var.split(".")[0]
                if base not in names and base not in local:
                    problems.append(f"{where}: Sub ${{{var}}} names nothing")
        elif key == "Fn::If" and arg[0] not in conditions:
            problems.append(f"{where}: condition {arg[0]} is not defined")
    walk(out, visit)
    for rid, r in resources.items():
        deps = r.get("DependsOn", [])
        for dep in [deps] if isinstance(deps, str) else deps:
            if dep not in resources:
                problems.append(f"{rid}: DependsOn {dep} names no resource")
        if "Condition" in r and r["Condition"] not in conditions:
            problems.append(f"{rid}: condition {r['Condition']} is not defined")

    # 3. Routes -> functions, with permissions.
    functions = {rid for rid, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    permitted = set()
    for r in resources.values():
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"].get("Principal") == "apigateway.amazonaws.com":
            ref = r["Properties"]["FunctionName"]
            permitted.add(ref.get("Ref") if isinstance(ref, dict) else ref)
    apis = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    if len(apis) != 1:
        problems.append(f"{len(apis)} HTTP APIs, expected one")
    routes = 0
    for api in apis:
        for route, methods in api["Properties"]["Body"]["paths"].items():
            for method, operation in methods.items():
                routes += 1
                uri = operation.get("x-amazon-apigateway-integration", {}).get("uri", {})
                found = set()
                walk(uri, lambda v, _w: found.update(
                    [v["Fn::GetAtt"][0]] if isinstance(v, dict) and "Fn::GetAtt" in v else []))
                found |= set(re.findall(r"\$\{(\w+)\.Arn\}", str(uri)))
                target = found & functions
                if not target:
                    problems.append(f"route {method.upper()} {route}: no function of the template")
                for f in target - permitted:
                    problems.append(f"route {method.upper()} {route}: {f} has no permission for the API")
    if not any(p == "/$default" for api in apis for p in api["Properties"]["Body"]["paths"]):
        problems.append("the HTTP API has no $default route")

    # 4. Functions: role, log group, environment -> resources and the IAM actions on them.
    def statements(role_id):
        role = resources.get(role_id, {}).get("Properties", {})
        for policy in role.get("Policies", []):
            yield from policy["PolicyDocument"]["Statement"]

    def arns(value):
        out = set()
        walk(value, lambda v, _w: out.update(
            [v["Fn::GetAtt"][0]] if isinstance(v, dict) and "Fn::GetAtt" in v else []))
        return out

    for fid in sorted(functions):
        props = resources[fid]["Properties"]
        role = props.get("Role", {}).get("Fn::GetAtt", [None])[0]
        if role not in resources:
            problems.append(f"{fid}: its role is not a resource of the template")
            continue
        group = props.get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        if resources.get(group, {}).get("Type") != "AWS::Logs::LogGroup":
            problems.append(f"{fid}: logs into no log group of the template")
        for var, value in props.get("Environment", {}).get("Variables", {}).items():
            if var not in NEEDS:
                continue
            kind, action = NEEDS[var]
            target = value.get("Ref") if isinstance(value, dict) else None
            if resources.get(target, {}).get("Type") != kind:
                problems.append(f"{fid}: {var} does not name a {kind}")
                continue
            allowed = any(
                s.get("Effect") == "Allow"
                and action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
                and target in arns(s.get("Resource"))
                for s in statements(role)
            )
            if not allowed:
                problems.append(f"{fid}: {var} names {target}, but its role may not {action} on it")

    # 5. Secrets (docs/security.md): SAM adds managed policies to the roles it generates (for
    #    a DynamoDB stream event, AWSLambdaDynamoDBExecutionRole). The template test evaluates
    #    our own statements; here, on SAM's output, no role may carry a managed policy that reads
    #    table items, nor a statement allowing dynamodb:* or Scan, and every function's role keeps
    #    its explicit Deny on secret keys.
    stream_only = {"AWSLambdaDynamoDBExecutionRole"}  # DescribeStream, GetRecords, GetShardIterator, ListStreams
    harmless = {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"} | stream_only
    view = resources.get("Table", {}).get("Properties", {}).get("StreamSpecification", {}).get("StreamViewType")
    for fid in sorted(functions):
        role = resources[fid]["Properties"].get("Role", {}).get("Fn::GetAtt", [None])[0]
        for arn in resources.get(role, {}).get("Properties", {}).get("ManagedPolicyArns", []):
            name = json.dumps(arn).rsplit("/", 1)[-1].strip('"}]')
            if name not in harmless:
                problems.append(f"{fid}: managed policy {name} may read the table's secret items")
            if name in stream_only and view != "KEYS_ONLY":
                problems.append(f"{fid}: reads the table's stream, whose {view} images carry secrets")
        denies = False
        for st in statements(role):
            actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
            if st.get("Effect") == "Allow" and any(a in ("dynamodb:*", "*", "dynamodb:Scan") for a in actions):
                problems.append(f"{fid}: allows {actions}: a Scan escapes every LeadingKeys condition")
            keys = st.get("Condition", {}).get("ForAnyValue:StringLike", {}).get("dynamodb:LeadingKeys", [])
            denies |= st.get("Effect") == "Deny" and any(str(k).startswith("SECRET#") for k in keys)
        # A role with no statement of its own (the dashboard's: logging and tracing only) allows
        # nothing on the table, so it needs no Deny.
        if not denies and any(True for _ in statements(role)):
            problems.append(f"{fid}: no Deny on the secret items (dynamodb:LeadingKeys SECRET#…)")

    if moto:
        moto_stack(out, moto, problems)

    print(f"deploy rehearsal: {len(resources)} resources after SAM's transform, {len(functions)} functions, "
          f"{routes} routes, {len(problems)} problems")
    for p in problems:
        print(f"  - {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
