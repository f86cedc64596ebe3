metadata name = 'dipguard storage account'
metadata description = 'A StorageV2 account with TLS 1.2, no public blob access and Entra ID as the default authentication, plus the tables and file shares asked for; with private endpoints given, reachable only through them.'

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

@description('Optional. Resource ID of the subnet for private endpoints. Given: the account gets a private endpoint for each of privateEndpointServices and its public network access is disabled. Empty: the public endpoint stays open (Entra ID, and the shared key where allowSharedKeyAccess is on).')
param privateEndpointSubnetResourceId string = ''

@description('Optional. The services (private link sub-resources) that get a private endpoint: table, blob, file, queue.')
param privateEndpointServices array = []

@description('Optional. Resource ID of the private DNS zone of each service in privateEndpointServices, by service name (network.bicep\'s privateDnsZoneResourceIds).')
param privateDnsZoneResourceIds object = {}

// Private: reachable only through the endpoints. A subnet with no service to connect would
// close the account to everything, so that fails the deployment up front.
var isPrivate = !empty(privateEndpointSubnetResourceId)
var privateEndpointServicesChecked = (isPrivate && empty(privateEndpointServices)) ? [
  string(int('privateEndpointServices must name at least one service when privateEndpointSubnetResourceId is given'))
] : privateEndpointServices

resource storageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  // checkov:skip=CKV_AZURE_59: Public network access follows privateEndpointSubnetResourceId: Disabled with private networking (prod.bicepparam); dev keeps the public endpoint, guarded by Entra ID, to stay cheap. checkov cannot evaluate the condition.
  // checkov:skip=CKV_AZURE_35: Same reason as CKV_AZURE_59: the firewall denies by default with private networking; dev's app, not network integrated, has no fixed outbound addresses to admit.
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
    publicNetworkAccess: isPrivate ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: isPrivate ? 'Deny' : 'Allow'
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

// One endpoint per service, each registered in that service's private DNS zone.
module storageAccount_privateEndpoints 'private-endpoint.bicep' = [
  for service in (isPrivate ? privateEndpointServicesChecked : []): {
    name: '${name}-pe-${service}'
    params: {
      name: 'pe-${name}-${service}'
      location: location
      tags: tags
      subnetResourceId: privateEndpointSubnetResourceId
      privateLinkServiceId: storageAccount.id
      groupId: service
      privateDnsZoneResourceId: privateDnsZoneResourceIds[service]
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
