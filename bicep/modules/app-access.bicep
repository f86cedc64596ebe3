metadata name = 'dipguard app data access'
metadata description = 'Grants the function app identity data-plane access: host storage, customer tables, Application Insights ingestion and Azure Managed Redis. Runs after the app exists, because its identity is created with it.'

@description('Required. Object ID of the function app\'s system-assigned identity.')
param principalId string

@description('Required. Name of the storage account the Functions host uses.')
param hostStorageAccountName string

@description('Required. Name of the storage account that holds the customer and surge tables.')
param dataStorageAccountName string

@description('Required. Name of the Application Insights component the app writes to.')
param appInsightsName string

@description('Required. Name of the Azure Managed Redis cluster.')
param redisName string

@description('Optional. Name of the Redis database.')
param redisDatabaseName string = 'default'

@description('Optional. Name of the Redis access policy assignment (letters and digits only).')
param redisAccessPolicyAssignmentName string = 'functionapp'

// Built-in role definition IDs.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

// Identity-based AzureWebJobsStorage: blobs hold host keys and timer locks, queues and tables
// hold host bookkeeping (diagnostic events).
var hostStorageRoleIds = [
  storageBlobDataOwnerRoleId
  storageQueueDataContributorRoleId
  storageTableDataContributorRoleId
]

resource hostStorageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: hostStorageAccountName
}

resource dataStorageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: dataStorageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource redisCluster 'Microsoft.Cache/redisEnterprise@2025-07-01' existing = {
  name: redisName
}

resource redisDatabase 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' existing = {
  parent: redisCluster
  name: redisDatabaseName
}

resource hostStorageAccount_roleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in hostStorageRoleIds: {
    name: guid(hostStorageAccount.id, principalId, roleId)
    scope: hostStorageAccount
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Functions host storage (AzureWebJobsStorage) with the app identity.'
    }
  }
]

resource dataStorageAccount_tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorageAccount.id, principalId, storageTableDataContributorRoleId)
  scope: dataStorageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Read customers, read and write operator surges.'
  }
}

resource appInsights_metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Send telemetry with Entra ID (local auth is disabled on the component).'
  }
}

// Redis data access: the 'default' access policy (full data access) for the app identity.
// redis-entraid authenticates as the identity's object ID with a token for https://redis.azure.com.
resource redisDatabase_appAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01' = {
  parent: redisDatabase
  name: redisAccessPolicyAssignmentName
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: principalId
    }
  }
}

@description('The name of the Redis access policy assignment.')
output name string = redisDatabase_appAccess.name

@description('The resource ID of the Redis access policy assignment.')
output resourceId string = redisDatabase_appAccess.id

@description('The resource IDs of the role assignments on the host storage account.')
output hostStorageRoleAssignmentIds array = [for (roleId, i) in hostStorageRoleIds: hostStorageAccount_roleAssignments[i].id]
