metadata name = 'dipguard app data access'
metadata description = 'Grants one function app\'s identity its data-plane access: host storage, Application Insights ingestion, Azure Managed Redis, read on the customer table and, for the operator app only, write on the surge table. Each table role is scoped to its table, not the account. Runs after the app exists, because its identity is created with it.'

@description('Required. Object ID of the function app\'s system-assigned identity.')
param principalId string

@description('Required. Which app the identity belongs to, for the role assignments\' descriptions: lookup or operator.')
@allowed([
  'lookup'
  'operator'
])
param appRole string

@description('Required. Name of the storage account the Functions host uses.')
param hostStorageAccountName string

@description('Required. Name of the storage account that holds the customer and surge tables.')
param dataStorageAccountName string

@description('Required. Name of the customer table: the identity reads it (Storage Table Data Reader on the table).')
param customerTableName string

@description('Optional. Name of the surge table the identity reads and writes (Storage Table Data Contributor on the table). Empty: no access to it, which is the lookup app\'s case.')
param surgeTableName string = ''

@description('Required. Name of the Application Insights component the app writes to.')
param appInsightsName string

@description('Required. Name of the Azure Managed Redis cluster.')
param redisName string

@description('Optional. Name of the Redis database.')
param redisDatabaseName string = 'default'

@description('Required. Name of the Redis access policy assignment (letters and digits only), one per identity.')
param redisAccessPolicyAssignmentName string

// Built-in role definition IDs.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageTableDataReaderRoleId = '76199698-9eea-4c19-bc75-cec21354c6b6'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

// Identity-based AzureWebJobsStorage: blobs hold host keys and timer locks, queues and tables
// hold host bookkeeping (diagnostic events). The host account holds no customer data.
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

resource dataStorageAccount_tableService 'Microsoft.Storage/storageAccounts/tableServices@2024-01-01' existing = {
  parent: dataStorageAccount
  name: 'default'
}

// Table data roles can be scoped to one table, the narrowest scope ("Authorize access to
// tables using Microsoft Entra ID", "Resource scope"; stored version ms.date 07/13/2021).
resource customerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' existing = {
  parent: dataStorageAccount_tableService
  name: customerTableName
}

resource surgeTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' existing = if (!empty(surgeTableName)) {
  parent: dataStorageAccount_tableService
  name: surgeTableName
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
      description: 'Functions host storage (AzureWebJobsStorage) with the ${appRole} app identity.'
    }
  }
]

resource customerTable_tableDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(customerTable.id, principalId, storageTableDataReaderRoleId)
  scope: customerTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataReaderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'The ${appRole} app reads customers (this table only).'
  }
}

resource surgeTable_tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(surgeTableName)) {
  name: guid(surgeTable.id, principalId, storageTableDataContributorRoleId)
  scope: surgeTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'The ${appRole} app reads and writes operator surges (this table only).'
  }
}

resource appInsights_metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'The ${appRole} app sends telemetry with Entra ID (local auth is disabled on the component).'
  }
}

// Redis data access: the 'default' access policy (full data access) for this identity.
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
