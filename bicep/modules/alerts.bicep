metadata name = 'dipguard alerts'
metadata description = 'An action group and four log search alert rules on Application Insights: degraded answers, p95 dip latency, 5xx responses and scale_schedule failures.'

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

@description('Optional. p95 duration of ivr_lookup, in milliseconds, that fires the latency alert.')
@minValue(100)
param p95LatencyThresholdMs int = 1000

// The app logs one line per dip, "dip " + JSON {event, keyKind, source, latencyMs, shed}, and
// one per scale tick, "scale_tick " + JSON {event, outcome}. Python logging lands in traces.
// host.json samples traces (requests and exceptions are excluded from sampling), so counts
// are weighted by itemCount, and the degraded rule uses a ratio, which sampling preserves.
var degradedQuery = '''
traces
| where message startswith "dip "
| extend dip = parse_json(substring(message, 4))
| where tostring(dip.event) == "dip"
| summarize dips = sum(itemCount), degraded = sumif(itemCount, tostring(dip.source) == "degraded")
| where dips >= __MIN_DIPS__
| extend degradedPercent = 100.0 * degraded / dips
'''

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
    description: 'More than ${degradedPercentThreshold}% of dips in 5 minutes were answered with the degraded default: neither the customer table nor the cache answered in time.'
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
  latencyAlert.id
  serverErrorAlert.id
  scaleFailureAlert.id
]
