metadata name = 'dipguard workbook'
metadata description = 'A shared Azure Monitor workbook on the Application Insights component: dips by source and latency, shedding, the valve, database reads against MAX_DB_QPS, instances against the schedule, surges, the read model, and sign-ins and refusals at the gateway, the apps and the surge switch.'

@description('Required. Name the workbook is shown by in the portal.')
param displayName string

@description('Required. Resource ID of the Application Insights component: the workbook is listed under its Workbooks and queries its customMetrics, traces and requests.')
param appInsightsResourceId string

@description('Required. Resource ID of the Log Analytics workspace the diagnostic settings send to: the sign-ins and refusals view reads API Management\'s gateway logs there (workspace() in a query of the component).')
param logAnalyticsWorkspaceResourceId string

@description('Optional. Location of the workbook.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the workbook.')
param tags object = {}

@description('Required. The fleet-wide database read budget (MAX_DB_QPS), drawn as the line database reads stay under.')
@minValue(1)
param maxDbQps int

@description('Required. Age in seconds of the read model at which the stale read model alert fires, drawn on the read model\'s age chart.')
@minValue(60)
param readModelMaxAgeSeconds int

@description('Optional. Percentage of degraded dips at which the degraded alert fires, drawn on the share of dips chart.')
@minValue(1)
@maxValue(100)
param degradedPercentThreshold int = 5

@description('Optional. Percentage of shed dips at which the shed alert fires, drawn on the share of dips chart.')
@minValue(1)
@maxValue(100)
param shedPercentThreshold int = 10

// The workbook's content is ../workbooks/dipguard.workbook.json, as the portal's Advanced
// Editor shows a workbook ("Notebook/1.0"). Its queries hold placeholders for the values
// this deployment knows, replaced here; the JSON stays valid JSON with them in place, so it
// can be read, tested and drawn (bicep/workbooks/layout.py) without Bicep.
var template = loadTextContent('../workbooks/dipguard.workbook.json')
var withComponent = replace(template, '__APP_INSIGHTS_RESOURCE_ID__', appInsightsResourceId)
// Query data across Log Analytics workspaces, applications and resources in Azure Monitor
// (cross-workspace-query): workspace("<resource ID>") names a workspace from a query run on
// the component.
var withResource = replace(withComponent, '__LOG_ANALYTICS_WORKSPACE_ID__', logAnalyticsWorkspaceResourceId)
var withBudget = replace(withResource, '__MAX_DB_QPS__', string(maxDbQps))
var withMaxAge = replace(withBudget, '__READ_MODEL_MAX_AGE_SECONDS__', string(readModelMaxAgeSeconds))
var withDegraded = replace(withMaxAge, '__DEGRADED_PERCENT__', string(degradedPercentThreshold))
var serializedData = replace(withDegraded, '__SHED_PERCENT__', string(shedPercentThreshold))

// A workbook's name must be a GUID. This one is derived from the component, so a redeploy
// updates the same workbook instead of adding another.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appInsightsResourceId, 'dipguard-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsResourceId
    version: 'Notebook/1.0'
    serializedData: serializedData
  }
}

@description('The name (a GUID) of the workbook.')
output name string = workbook.name

@description('The resource ID of the workbook.')
output resourceId string = workbook.id
