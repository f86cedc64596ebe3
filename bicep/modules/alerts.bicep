metadata name = 'dipguard alerts'
metadata description = 'An action group and seven log search alert rules on Application Insights: degraded answers, shed dips, the local valve (Redis breaker open), a stale read model, p95 dip latency, 5xx responses and scale_schedule failures.'

@description('Required. Name of the action group.')
param name string

@description('Required. Resource ID of the Application Insights component the rules query.')
param appInsightsResourceId string

@description('Optional. Location of the alert rules (the action group is global).')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Email addresses notified when an alert fires.')
param alertEmails array = []

@description('Optional. Percentage of dips answered "degraded" over 5 minutes that fires the degraded alert.')
@minValue(1)
@maxValue(100)
param degradedPercentThreshold int = 5

@description('Optional. Fewest dips in the 5-minute window before the degraded percentage is judged, so three calls at night cannot page anyone.')
@minValue(1)
param degradedMinimumDips int = 20

@description('Optional. Percentage of dips answered stale or degraded because they were shed (dipguard.sheds) over 5 minutes that fires the shed alert; judged only above degradedMinimumDips dips, like the degraded alert.')
@minValue(1)
@maxValue(100)
param shedPercentThreshold int = 10

@description('Required. Age in seconds of the last complete warm of the read model (dipguard.readmodel.age) above which the stale read model alert fires.')
@minValue(60)
param readModelMaxAgeSeconds int

@description('Optional. Decisions by a worker\'s local budget in 5 minutes above which the local valve alert fires. One failed Redis call makes one such decision; the breaker opens after REDIS_BREAKER_FAILURES (5) in a row, and then every read decides locally until Redis answers.')
@minValue(0)
param localValveDecisionsThreshold int = 20

@description('Optional. p95 duration of ivr_lookup, in milliseconds, that fires the latency alert.')
@minValue(100)
param p95LatencyThresholdMs int = 1000

// Metric alerts (Microsoft.Insights/metricAlerts on the azure.applicationinsights namespace)
// were considered for the rules below and not used; these are log search alerts over the
// customMetrics table instead, for three reasons:
// * OpenTelemetry metrics are stored twice: in customMetrics, with every attribute, and in
//   the metrics store, where "the preaggregated version of the metric is stored by default
//   with no dimensions"; keeping dimensions there is a preview feature switched on in the
//   portal (learn.microsoft.com/azure/azure-monitor/app/pre-aggregated-metrics-log-metrics,
//   "Custom metrics dimensions and preaggregation"). Without it no metric alert can tell a
//   degraded dip from a cached one, or the local valve from the fleet's.
// * Its switch, the component property CustomMetricsOptedInType: 'WithDimensions', is
//   undocumented and missing from the published type of Microsoft.Insights/components
//   (github.com/Azure/bicep/issues/6595, open: Bicep warns BCP037) and from
//   azure-mgmt-applicationinsights' model, which tests/support/bicep_model_check.py holds
//   monitoring.bicep to. It can be set, but not reliably enough to page anyone on.
// * The degraded and shed rules are shares of dips with a floor of dips: a metric alert
//   criterion compares one metric's aggregation with a threshold and cannot divide two.
// customMetrics is not sampled ("Metrics aren't sampled. Use them to reliably alert on key
// signals": learn.microsoft.com/azure/azure-monitor/app/opentelemetry-sampling), unlike the
// traces the degraded rule used to count. shared/dip/metrics.py names every metric, attribute
// and value; tests/bicep/test_workbook.py holds these queries to what it emits. Counters and
// gauges are read from `value` (a counter's sum over one export, a gauge's reading), as
// Azure Monitor's exporter sends them; each dip counts once, under its own latency_le bucket.
var degradedQuery = '''
customMetrics
| where name == "dipguard.dips"
| extend source = tostring(customDimensions["source"])
| summarize dips = sum(value), degraded = sumif(value, source == "degraded")
| where dips >= __MIN_DIPS__
| extend degradedPercent = 100.0 * degraded / dips
'''

// A shed dip is one answered stale or degraded because the valve, an in-flight slot, the
// deadline or the database said no; dipguard.sheds counts them by reason.
var shedQuery = '''
customMetrics
| where name in ("dipguard.dips", "dipguard.sheds")
| summarize dips = sumif(value, name == "dipguard.dips"), sheds = sumif(value, name == "dipguard.sheds")
| where dips >= __MIN_DIPS__
| extend shedPercent = 100.0 * sheds / dips
'''

// The local valve decides while the Redis breaker is open, and for a single call Redis
// failed: the fleet-wide budget is not enforced and the cache is not read. A threshold above
// a few stray failures separates a Redis that is down from one slow call.
var localValveQuery = '''
customMetrics
| where name == "dipguard.valve.decisions"
| where tostring(customDimensions["valve"]) == "local"
| summarize localDecisions = sum(value)
'''

// Each worker process reports the age of the last complete warm it has read, every export;
// none is reported before it has read one.
var readModelAgeQuery = '''
customMetrics
| where name == "dipguard.readmodel.age"
| summarize readModelAgeSeconds = max(value)
'''

// The three rules below stay on requests and traces. No metric counts 5xx responses or
// scale ticks, and for latency the requests table is better than any metric: requests are
// never sampled (host.json excludes them) and give the exact p95 of what the host served,
// while dipguard.dip.duration keeps no percentiles and the latency_le buckets give only a
// bucket's bound (a p95 just over 1000 ms reads as 2500). The scale tick logs one line,
// "scale_tick " + JSON {event, outcome, ...}; traces are sampled, so the scale rule also
// counts the failed invocations the timer raises for a broken tick.
var latencyQuery = '''
requests
| where name == "ivr_lookup" or operation_Name == "ivr_lookup"
| summarize p95DurationMs = percentile(duration, 95)
'''

var serverErrorQuery = '''
requests
| where name == "ivr_lookup" or operation_Name == "ivr_lookup"
| where toint(resultCode) >= 500
| summarize serverErrors = sum(itemCount)
'''

var scaleFailureQuery = '''
union
    (traces
    | where message startswith "scale_tick "
    | extend tick = parse_json(substring(message, 11))
    | where tostring(tick.event) == "scale_tick"
    | where tostring(tick.outcome) in ("failed", "partial", "invalid_schedule")
    | project itemCount),
    (requests
    | where name == "scale_schedule" or operation_Name == "scale_schedule"
    | where success == false
    | project itemCount)
| summarize failures = sum(itemCount)
'''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'dipguard'
    enabled: true
    emailReceivers: [
      for (email, i) in alertEmails: {
        name: 'email-${i}'
        emailAddress: email
        useCommonAlertSchema: true
      }
    ]
  }
}

resource degradedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${name}-degraded-answers'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'dipguard: degraded answers above ${degradedPercentThreshold}%'
    description: 'More than ${degradedPercentThreshold}% of dips in 5 minutes (dipguard.dips, at least ${degradedMinimumDips} of them) were answered with the degraded default: neither the customer table nor the cache answered in time.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsResourceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: replace(degradedQuery, '__MIN_DIPS__', string(degradedMinimumDips))
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'degradedPercent'
          operator: 'GreaterThan'
          threshold: degradedPercentThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource shedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${name}-shed-dips'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'dipguard: shed dips above ${shedPercentThreshold}%'
    description: 'More than ${shedPercentThreshold}% of dips in 5 minutes (at least ${degradedMinimumDips} of them) were shed to a stale or degraded answer (dipguard.sheds): the database budget (MAX_DB_QPS), the reads in flight or the deadline ran out, or the database failed. The workbook shows the reasons.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsResourceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: replace(shedQuery, '__MIN_DIPS__', string(degradedMinimumDips))
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'shedPercent'
          operator: 'GreaterThan'
          threshold: shedPercentThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource localValveAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${name}-local-valve'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'dipguard: Redis failing, the local valve is deciding'
    description: 'The local valve decided more than ${localValveDecisionsThreshold} database reads in 5 minutes (dipguard.valve.decisions, valve local): workers could not reach Redis, so their dips ran without the cache and the fleet-wide database budget, each worker process within LOCAL_DB_QPS.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsResourceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: localValveQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'localDecisions'
          operator: 'GreaterThan'
          threshold: localValveDecisionsThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource readModelAgeAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${name}-stale-read-model'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'dipguard: read model older than ${readModelMaxAgeSeconds} s'
    description: 'The last complete warm of the read model is more than ${readModelMaxAgeSeconds} s old (dipguard.readmodel.age): the cache_warm timer has not completed a warm in time (its cache_warm log line says why). Past READ_MODEL_MAX_AGE_SECONDS the app no longer answers a caller absent from the read model without a database read.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsResourceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: readModelAgeQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'readModelAgeSeconds'
          operator: 'GreaterThan'
          threshold: readModelMaxAgeSeconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource latencyAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${name}-p95-latency'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'dipguard: p95 dip latency above ${p95LatencyThresholdMs} ms'
    description: 'The 95th percentile duration of ivr_lookup over 5 minutes is above ${p95LatencyThresholdMs} ms; Genesys gives a dip 3 s in all.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsResourceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: latencyQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'p95DurationMs'
          operator: 'GreaterThan'
          threshold: p95LatencyThresholdMs
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource serverErrorAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${name}-server-errors'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'dipguard: 5xx from ivr_lookup'
    description: 'ivr_lookup answered with a 5xx status. The handler is built to answer 200 with a degraded default instead, so any 5xx is a bug or a platform failure.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsResourceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: serverErrorQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'serverErrors'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource scaleFailureAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${name}-scale-schedule-failures'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'dipguard: scale_schedule failed'
    description: 'A scale_schedule tick failed, applied only part of a change, or found the schedule invalid: always-ready and pre-warmed instances may not match the schedule ahead of a spike.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsResourceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: scaleFailureQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

@description('The name of the action group.')
output name string = actionGroup.name

@description('The resource ID of the action group.')
output resourceId string = actionGroup.id

@description('The resource IDs of the alert rules.')
output alertRuleIds array = [
  degradedAlert.id
  shedAlert.id
  localValveAlert.id
  readModelAgeAlert.id
  latencyAlert.id
  serverErrorAlert.id
  scaleFailureAlert.id
]
