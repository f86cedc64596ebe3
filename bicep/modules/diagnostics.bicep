metadata name = 'dipguard diagnostic settings'
metadata description = 'Diagnostic settings that send the audit trail to the Log Analytics workspace: Key Vault audit events, API Management gateway logs, storage reads, writes and deletes on the customer table service and the host account\'s blob and file services, and the function apps\' logs.'

// Each setting is an extension resource on the resource it audits, so the resources are
// named here (`existing`) and the module deploys after the modules that create them. Only
// logs are sent: the metrics already reach Azure Monitor without a setting.

@description('Required. Resource ID of the Log Analytics workspace the logs go to.')
param workspaceResourceId string

@description('Optional. Name of each diagnostic setting.')
param settingName string = 'audit-to-log-analytics'

@description('Required. Names of the function apps whose FunctionAppLogs are sent (the lookup app and the operator app).')
@minLength(1)
param functionAppNames array

@description('Required. Name of the API Management service whose gateway logs are sent.')
param apiManagementName string

@description('Required. Name of the Key Vault whose audit events are sent.')
param keyVaultName string

@description('Required. Name of the customer data storage account: its table service\'s reads, writes and deletes are sent.')
param dataStorageAccountName string

@description('Required. Names of the host storage accounts, one per function app: each blob service\'s (host keys, timer locks) and file service\'s (the content share, the code) reads, writes and deletes are sent.')
param hostStorageAccountNames array

// Azure Storage resource logs: StorageRead, StorageWrite and StorageDelete, per service
// (Monitoring Azure Blob Storage; Storage considerations for Azure Functions, "Storage logs":
// "at least the StorageWrite log category"). They land in StorageTableLogs, StorageBlobLogs
// and StorageFileLogs. A table request's URI carries the row key: a keyed hash, never a number.
var storageLogs = [
  {
    category: 'StorageRead'
    enabled: true
  }
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]

resource sites 'Microsoft.Web/sites@2024-11-01' existing = [
  for siteName in functionAppNames: {
    name: siteName
  }
]

resource apiManagement 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apiManagementName
}

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

resource dataStorageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: dataStorageAccountName
}

resource dataStorageAccount_tableService 'Microsoft.Storage/storageAccounts/tableServices@2024-01-01' existing = {
  parent: dataStorageAccount
  name: 'default'
}

resource hostStorageAccounts 'Microsoft.Storage/storageAccounts@2024-01-01' existing = [
  for accountName in hostStorageAccountNames: {
    name: accountName
  }
]

resource hostStorageAccounts_blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' existing = [
  for (accountName, i) in hostStorageAccountNames: {
    parent: hostStorageAccounts[i]
    name: 'default'
  }
]

resource hostStorageAccounts_fileService 'Microsoft.Storage/storageAccounts/fileServices@2024-01-01' existing = [
  for (accountName, i) in hostStorageAccountNames: {
    parent: hostStorageAccounts[i]
    name: 'default'
  }
]

// FunctionAppLogs: the host's and the functions' log lines (the FunctionAppLogs table).
resource sites_diagnosticSettings 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = [
  for (siteName, i) in functionAppNames: {
    name: settingName
    scope: sites[i]
    properties: {
      workspaceId: workspaceResourceId
      logs: [
        {
          category: 'FunctionAppLogs'
          enabled: true
        }
      ]
    }
  }
]

// GatewayLogs: every request through the gateway with its caller's address, subscription
// and response code, the 401s of the token check included. Dedicated: the resource-specific
// table ApiManagementGatewayLogs, rather than AzureDiagnostics.
resource apiManagement_diagnosticSettings 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: apiManagement
  properties: {
    workspaceId: workspaceResourceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'GatewayLogs'
        enabled: true
      }
    ]
  }
}

// The audit category group: AuditEvent, every authenticated or refused request to the vault
// (secret reads by the reference identity among them).
resource vault_diagnosticSettings 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: vault
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

resource dataStorageAccount_tableService_diagnosticSettings 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: dataStorageAccount_tableService
  properties: {
    workspaceId: workspaceResourceId
    logs: storageLogs
  }
}

resource hostStorageAccounts_blobService_diagnosticSettings 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = [
  for (accountName, i) in hostStorageAccountNames: {
    name: settingName
    scope: hostStorageAccounts_blobService[i]
    properties: {
      workspaceId: workspaceResourceId
      logs: storageLogs
    }
  }
]

resource hostStorageAccounts_fileService_diagnosticSettings 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = [
  for (accountName, i) in hostStorageAccountNames: {
    name: settingName
    scope: hostStorageAccounts_fileService[i]
    properties: {
      workspaceId: workspaceResourceId
      logs: storageLogs
    }
  }
]

var siteSettingResourceIds = [for (siteName, i) in functionAppNames: sites_diagnosticSettings[i].id]
var hostBlobSettingResourceIds = [for (accountName, i) in hostStorageAccountNames: hostStorageAccounts_blobService_diagnosticSettings[i].id]
var hostFileSettingResourceIds = [for (accountName, i) in hostStorageAccountNames: hostStorageAccounts_fileService_diagnosticSettings[i].id]

@description('The name of every diagnostic setting the module makes (one per audited resource).')
output name string = settingName

@description('The resource ID of the Key Vault\'s audit setting; resourceIds lists every setting.')
output resourceId string = vault_diagnosticSettings.id

@description('The resource IDs of every diagnostic setting: the function apps\', then API Management\'s, the Key Vault\'s, the customer table service\'s, then each host account\'s blob service and each host account\'s file service.')
output resourceIds array = concat(siteSettingResourceIds, [apiManagement_diagnosticSettings.id, vault_diagnosticSettings.id, dataStorageAccount_tableService_diagnosticSettings.id], hostBlobSettingResourceIds, hostFileSettingResourceIds)
