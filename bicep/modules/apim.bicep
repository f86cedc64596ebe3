metadata name = 'dipguard API Management service'
metadata description = 'The API Management instance Genesys Cloud calls. A tier with rate-limit-by-key is required, so Consumption is not allowed.'

@description('Required. Name of the API Management service.')
param name string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Pricing tier. Consumption is excluded: it has no rate-limit-by-key policy.')
@allowed([
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'BasicV2'
  'StandardV2'
  'PremiumV2'
])
param skuName string = 'Developer'

@description('Optional. Scale units. Developer allows only 1.')
@minValue(1)
@maxValue(12)
param skuCapacity int = 1

@description('Required. Email address that receives API Management system notifications.')
param publisherEmail string

@description('Optional. Organisation name shown as the API publisher.')
param publisherName string = 'dipguard'

// Old protocols and weak ciphers off on both sides of the gateway.
var securityProperties = {
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Ciphers.TripleDes168': 'False'
}

resource apiManagement 'Microsoft.ApiManagement/service@2024-05-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_107: Genesys Cloud reaches the gateway over the internet; a VNet-injected gateway adds nothing for a public caller and needs Premium or an SKU-specific subnet.
  // checkov:skip=CKV_AZURE_174: Same reason: the gateway is the public entry point for Genesys Cloud data actions. Callers must present a subscription key and are rate limited.
  sku: {
    name: skuName
    capacity: skuCapacity
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
    customProperties: securityProperties
    publicNetworkAccess: 'Enabled'
    virtualNetworkType: 'None'
  }
}

@description('The name of the API Management service.')
output name string = apiManagement.name

@description('The resource ID of the API Management service.')
output resourceId string = apiManagement.id

@description('The gateway base URL, for example https://<name>.azure-api.net.')
output gatewayUrl string = apiManagement.properties.gatewayUrl

@description('The object ID of the service\'s system-assigned identity.')
output systemAssignedMIPrincipalId string = apiManagement.identity.principalId

@description('The public IP addresses the gateway calls backends from (empty on tiers that have none).')
output publicIpAddresses array = apiManagement.properties.?publicIPAddresses ?? []
