metadata name = 'dipguard storage account'
metadata description = 'A StorageV2 account with TLS 1.2, no public blob access and Entra ID as the default authentication, plus the tables and file shares asked for.'

@description('Required. Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Replication SKU. Standard_ZRS keeps the account up through the loss of one zone.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Optional. Allow shared key (account key and SAS) authorization. Leave false unless a platform feature cannot use Entra ID.')
param allowSharedKeyAccess bool = false

@description('Optional. Names of the tables to create.')
param tableNames array = []

@description('Optional. Names of the Azure Files shares to create.')
param fileShareNames array = []

@description('Optional. Days deleted blobs, containers and file shares are kept before they are purged.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

resource storageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  // checkov:skip=CKV_AZURE_59: Public endpoint kept: the Elastic Premium app is not VNet integrated, so it reaches storage over the public endpoint with Entra ID tokens.
  // checkov:skip=CKV_AZURE_35: Same reason as CKV_AZURE_59: a default-deny firewall would block the app, which has no fixed outbound IPs.
  // checkov:skip=CKV_AZURE_206: Replication is a parameter: dev uses LRS to stay cheap, prod.bicepparam chooses ZRS.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: allowSharedKeyAccess
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource storageAccount_blobServices 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: storageAccount
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource storageAccount_tableServices 'Microsoft.Storage/storageAccounts/tableServices@2024-01-01' = {
  parent: storageAccount
  name: 'default'
  properties: {}
}

resource storageAccount_tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = [
  for tableName in tableNames: {
    parent: storageAccount_tableServices
    name: tableName
    properties: {}
  }
]

resource storageAccount_fileServices 'Microsoft.Storage/storageAccounts/fileServices@2024-01-01' = if (!empty(fileShareNames)) {
  parent: storageAccount
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource storageAccount_fileShares 'Microsoft.Storage/storageAccounts/fileServices/shares@2024-01-01' = [
  for shareName in fileShareNames: {
    parent: storageAccount_fileServices
    name: shareName
    properties: {
      shareQuota: 100
      enabledProtocols: 'SMB'
    }
  }
]

@description('The name of the storage account.')
output name string = storageAccount.name

@description('The resource ID of the storage account.')
output resourceId string = storageAccount.id

@description('The table service endpoint, for example https://<name>.table.core.windows.net/.')
output tableEndpoint string = storageAccount.properties.primaryEndpoints.table

@description('The blob service endpoint.')
output blobEndpoint string = storageAccount.properties.primaryEndpoints.blob

@description('The names of the tables created.')
output tableNames array = [for (tableName, i) in tableNames: storageAccount_tables[i].name]
