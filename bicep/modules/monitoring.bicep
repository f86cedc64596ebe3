metadata name = 'dipguard monitoring'
metadata description = 'A Log Analytics workspace and a workspace-based Application Insights component that accepts Entra ID authenticated telemetry only.'

@description('Required. Name of the Application Insights component.')
param name string

@description('Required. Name of the Log Analytics workspace.')
param workspaceName string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Days the workspace keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Optional. Daily ingestion cap in GB; -1 means no cap. A cap stops ingestion for the rest of the day, alerts included, so prod should not set one.')
param dailyQuotaGb int = -1

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: name
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    // Telemetry must carry an Entra ID token: the connection string alone cannot write.
    DisableLocalAuth: true
    RetentionInDays: retentionInDays
  }
}

@description('The name of the Application Insights component.')
output name string = appInsights.name

@description('The resource ID of the Application Insights component.')
output resourceId string = appInsights.id

@description('The connection string of the Application Insights component (not a secret: local auth is disabled).')
output connectionString string = appInsights.properties.ConnectionString

@description('The name of the Log Analytics workspace.')
output workspaceName string = workspace.name

@description('The resource ID of the Log Analytics workspace.')
output workspaceResourceId string = workspace.id
