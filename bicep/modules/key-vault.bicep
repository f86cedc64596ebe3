metadata name = 'dipguard key vault'
metadata description = 'An RBAC-authorized Key Vault for the function key API Management sends to the function app, readable by the principals given from the addresses and subnets given.'

@description('Required. Name of the key vault (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Object IDs of service principals (managed identities) that may read secrets.')
param secretsUserPrincipalIds array = []

@description('Optional. Public IP addresses allowed through the vault firewall: a classic-tier API Management gateway\'s static addresses.')
param allowedIpAddresses array = []

@description('Optional. Subnets (with the Microsoft.KeyVault service endpoint) allowed through the vault firewall: a StandardV2 gateway\'s integration subnet.')
param allowedSubnetResourceIds array = []

@description('Optional. Days a deleted vault or secret can be recovered. Purge protection is always on, so the vault name stays taken for this long after a teardown.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

// Key Vault Secrets User: read secret contents.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' = {
  name: name
  location: location
  tags: tags
  // Public endpoint with a deny-by-default firewall that admits only API Management's own
  // addresses or subnet, from which it fetches the named value. A private endpoint would
  // need private DNS and a network for every tier, classic ones included.
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    // API Management needs a network line of sight to the vault: trusted-service bypass no
    // longer admits it (api-management trusted-service-connectivity-retirement-march-2026).
    // Deployments write the secret through ARM, which this firewall does not filter.
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'None'
      ipRules: [
        for ip in allowedIpAddresses: {
          value: ip
        }
      ]
      virtualNetworkRules: [
        for subnetId in allowedSubnetResourceIds: {
          id: subnetId
          ignoreMissingVnetServiceEndpoint: false
        }
      ]
    }
  }
}

resource keyVault_secretsUsers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for principalId in secretsUserPrincipalIds: {
    name: guid(keyVault.id, principalId, keyVaultSecretsUserRoleId)
    scope: keyVault
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Read the dipguard function key for API Management.'
    }
  }
]

@description('The name of the key vault.')
output name string = keyVault.name

@description('The resource ID of the key vault.')
output resourceId string = keyVault.id

@description('The vault URI.')
output uri string = keyVault.properties.vaultUri
