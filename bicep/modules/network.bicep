metadata name = 'dipguard API Management outbound network'
metadata description = 'The virtual network through which a v2-tier API Management gateway calls the function app: one subnet, delegated to Microsoft.Web/serverFarms for outbound virtual network integration, with its network security group and a service endpoint for App Service.'

// Standard v2 gateways call backends from addresses that are not documented as static, and
// the ApiManagement service tag covers the control plane, not the gateway's calls
// (learn.microsoft.com/azure/api-management/api-management-howto-ip-addresses). Outbound
// virtual network integration puts those calls in a subnet of this network instead
// (learn.microsoft.com/azure/api-management/integrate-vnet-outbound), and the service
// endpoint lets the function app admit that subnet, and nothing else, by rule.

@description('Required. Name of the virtual network.')
param name string

@description('Required. Name of the network security group on the subnet.')
param networkSecurityGroupName string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Address range of the network and of its one subnet. API Management needs at least a /27 and recommends a /24 so the gateway can scale out.')
param addressPrefix string = '10.90.0.0/24'

@description('Optional. Name of the subnet API Management integrates with.')
param subnetName string = 'apim-outbound'

// integrate-vnet-outbound: "A network security group must be associated with the subnet.
// No specific rules are required." The default rules already allow outbound traffic to
// the function app.
resource networkSecurityGroup 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: networkSecurityGroupName
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

// The subnet is declared inside the network, so a redeploy does not remove and re-add it
// while API Management is attached to it.
resource virtualNetwork 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: subnetName
        properties: {
          addressPrefix: addressPrefix
          networkSecurityGroup: {
            id: networkSecurityGroup.id
          }
          // API Management v2 integration is built on App Service's: the subnet is
          // delegated to Microsoft.Web/serverFarms and used by this one instance only.
          delegations: [
            {
              name: 'Microsoft.Web.serverFarms'
              properties: {
                serviceName: 'Microsoft.Web/serverFarms'
              }
            }
          ]
          // Microsoft.Web: the function app's access restriction can name this subnet
          // (App Service access restrictions by service endpoint).
          serviceEndpoints: [
            {
              service: 'Microsoft.Web'
            }
          ]
        }
      }
    ]
  }
}

@description('The name of the virtual network.')
output name string = virtualNetwork.name

@description('The resource ID of the virtual network.')
output resourceId string = virtualNetwork.id

@description('The resource ID of the subnet API Management integrates with.')
output subnetResourceId string = '${virtualNetwork.id}/subnets/${subnetName}'
